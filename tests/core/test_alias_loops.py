"""Alias loops, dangling aliases and container cycles: reported, never recursed into forever.

The texts named ``HANDWRITTEN_*`` were written by hand in QEMU 7.2's tree format (no
QEMU prints them: a dangling target has no block, and QEMU itself would hang on a
loop); the models are built in code. Every case must end in a ParseError (line,
column, the name) or a ModelError naming the region — also through the CLI, as a
message and exit code 2 rather than a traceback.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from oracle import render_machine_oracle

from qmirror.cli import main
from qmirror.core.model import (
    AddressSpace,
    Machine,
    MemoryRegion,
    RegionKind,
    alias,
    container,
    io,
    ram,
)
from qmirror.core.render import flatview_root, render, render_machine
from qmirror.errors import ModelError, ParseError
from qmirror.rebuild.tree import build_machine
from qmirror.text.tree import parse_tree_document, print_tree
from qmirror.verify.check import check


def text(*lines: str) -> str:
    return "\n".join(lines) + "\n"


W = "0000000000000000-0000000000000fff"
SYS = "  0000000000000000-000000000000ffff (prio 0, i/o): sys"

HANDWRITTEN_DANGLING = text(
    "address-space: memory",
    SYS,
    f"    {W} (prio 0, ram): alias a @missing {W}",
    "",
)
HANDWRITTEN_ONE_BLOCK_OF_TWO_MISSING = text(
    "address-space: memory",
    SYS,
    f"    {W} (prio 0, ram): alias a @x {W}",
    f"    0000000000001000-0000000000001fff (prio 0, ram): alias b @y {W}",
    "",
    "memory-region: y",
    f"  {W} (prio 0, ram): y",
    "",
)
HANDWRITTEN_ALIAS_LOOP = text(
    "address-space: memory",
    SYS,
    f"    {W} (prio 0, i/o): alias a @b {W}",
    "",
    "memory-region: b",
    f"  {W} (prio 0, i/o): alias b @a {W}",
    "",
    "memory-region: a",
    f"  {W} (prio 0, i/o): alias a @b {W}",
    "",
)
HANDWRITTEN_ALIAS_OF_ITSELF = text(
    "address-space: memory",
    SYS,
    f"    {W} (prio 0, i/o): alias a @a {W}",
    "",
    "memory-region: a",
    f"  {W} (prio 0, i/o): alias a @a {W}",
    "",
)
HANDWRITTEN_ALIAS_INTO_ITS_CONTAINER = text(
    "address-space: memory",
    SYS,
    f"    {W} (prio 0, i/o): alias back @sys {W}",
    "",
    "memory-region: sys",
    SYS,
    f"    {W} (prio 0, i/o): alias back @sys {W}",
    "",
)
HANDWRITTEN_ALIAS_INTO_A_GRANDPARENT = text(
    "address-space: memory",
    SYS,
    "    0000000000000000-0000000000007fff (prio 0, i/o): mid",
    f"      {W} (prio 0, i/o): alias up @sys {W}",
    "",
    "memory-region: sys",
    SYS,
    "    0000000000000000-0000000000007fff (prio 0, i/o): mid",
    f"      {W} (prio 0, i/o): alias up @sys {W}",
    "",
)
HANDWRITTEN_BLOCK_NOBODY_ALIASES = text(  # -D shown, so no hidden alias can explain it
    "address-space: memory",
    SYS,
    f"    {W} (prio 0, ram): r [disabled]",
    "",
    "memory-region: orphan",
    f"  {W} (prio 0, ram): orphan",
    "",
)
FLAT = text(
    "FlatView #0",
    ' AS "memory", root: sys',
    " Root memory region: sys",
    "  No rendered FlatView",
    "",
)


@contextmanager
def deadline(seconds: int = 10) -> Iterator[None]:
    """Fail instead of hanging (an infinite walk is the bug these tests look for)."""

    def fire(signum: int, frame: object) -> None:
        raise AssertionError(f"still running after {seconds} s: an endless walk")

    old = signal.signal(signal.SIGALRM, fire)
    outer = signal.alarm(seconds)  # pytest-timeout's own alarm, if any: re-armed after
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.alarm(outer)


# (text, error type, name the message must quote, line, column or 0 for "any")
TEXT_CASES: dict[str, tuple[str, type[Exception], str, int, int]] = {
    "dangling": (HANDWRITTEN_DANGLING, ParseError, "missing", 3, 0),
    "one block of two missing": (HANDWRITTEN_ONE_BLOCK_OF_TWO_MISSING, ParseError, "x", 3, 0),
    "alias loop": (HANDWRITTEN_ALIAS_LOOP, ModelError, "a", 0, 0),
    "alias of itself": (HANDWRITTEN_ALIAS_OF_ITSELF, ModelError, "a", 0, 0),
    "alias into its container": (HANDWRITTEN_ALIAS_INTO_ITS_CONTAINER, ModelError, "back", 0, 0),
    "alias into a grandparent": (HANDWRITTEN_ALIAS_INTO_A_GRANDPARENT, ModelError, "up", 0, 0),
    "block nobody aliases": (
        HANDWRITTEN_BLOCK_NOBODY_ALIASES,
        ParseError,
        "memory-region: orphan",
        5,
        1,
    ),
}


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_hand_written_text_is_refused_with_the_region_named(case: str) -> None:
    tree, kind, name, line, column = TEXT_CASES[case]
    with deadline(), pytest.raises(kind) as info:
        check(tree, FLAT)
    err = info.value
    assert f"'{name}'" in str(err)
    if isinstance(err, ParseError):
        assert err.line == line
        if column:
            assert err.column == column
        else:
            # Points into the alias line at the dangling name.
            assert tree.splitlines()[line - 1][err.column - 1 :].startswith(f"@{name} ")


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_cli_reports_the_refusal_without_a_traceback(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree, _, name, _, _ = TEXT_CASES[case]
    (tmp_path / "tree.txt").write_text(tree)
    (tmp_path / "flat.txt").write_text(FLAT)
    with deadline():
        code = main(
            ["check", "--tree", str(tmp_path / "tree.txt"), "--flat", str(tmp_path / "flat.txt")]
        )
    err = capsys.readouterr().err
    assert code == 2
    assert f"'{name}'" in err
    assert "Traceback" not in err


# -- models built in code ------------------------------------------------------------------


def _alias_loop() -> tuple[Machine, MemoryRegion]:
    a = MemoryRegion("a", RegionKind.ALIAS, 0x1000)
    b = alias("b", a, 0, 0x1000)
    a.alias = b
    sys = container("sys", 1 << 64)
    sys.add_subregion(a, 0)
    sys.add_subregion(io("x", 1), 0x5000)
    return Machine([AddressSpace("memory", sys)]), sys


def _alias_of_itself() -> tuple[Machine, MemoryRegion]:
    me = MemoryRegion("me", RegionKind.ALIAS, 0x1000)
    me.alias = me
    sys = container("sys", 1 << 64)
    sys.add_subregion(me, 0)
    return Machine([AddressSpace("memory", sys)]), sys


def _alias_into_its_container() -> tuple[Machine, MemoryRegion]:
    c = container("c", 0x1000)
    c.add_subregion(alias("back", c, 0, 0x1000), 0)
    return Machine([AddressSpace("memory", c)]), c


def _alias_into_a_grandparent() -> tuple[Machine, MemoryRegion]:
    g = container("g", 1 << 64)
    p = container("p", 0x10000)
    g.add_subregion(p, 0)
    g.add_subregion(io("y", 1), 0x100000)
    p.add_subregion(alias("up", g, 0, 0x10000), 0)
    return Machine([AddressSpace("memory", g)]), g


def _alias_without_target() -> tuple[Machine, MemoryRegion]:
    sys = container("sys", 1 << 64)
    sys.add_subregion(MemoryRegion("lost", RegionKind.ALIAS, 0x1000), 0)
    return Machine([AddressSpace("memory", sys)]), sys


def _container_cycle_made_by_hand() -> tuple[Machine, MemoryRegion]:
    # add_subregion refuses this; a caller editing the lists directly can still do it.
    a = container("a", 0x1000)
    b = container("b", 0x1000)
    a.add_subregion(b, 0)
    b.subregions.append(a)
    a.container = b
    return Machine([AddressSpace("memory", a)]), a


MODEL_CASES: dict[str, tuple[Callable[[], tuple[Machine, MemoryRegion]], str]] = {
    "alias loop": (_alias_loop, "a"),
    "alias of itself": (_alias_of_itself, "me"),
    "alias into its container": (_alias_into_its_container, "back"),
    "alias into a grandparent": (_alias_into_a_grandparent, "up"),
    "alias without a target": (_alias_without_target, "lost"),
    "container cycle": (_container_cycle_made_by_hand, "a"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_model_rendering_refuses_with_the_region_named(case: str) -> None:
    make, name = MODEL_CASES[case]
    machine, root = make()
    with deadline(), pytest.raises(ModelError, match=f"'{name}'"):
        render_machine(machine)
    with deadline():
        flatview_root(root)  # terminates, whatever it answers


@pytest.mark.parametrize(
    "case", ["alias loop", "alias of itself", "alias without a target", "container cycle"]
)
def test_model_check_refuses_what_qemu_would_hang_on(case: str) -> None:
    make, name = MODEL_CASES[case]
    machine, _ = make()
    with deadline(), pytest.raises(ModelError, match=f"'{name}'"):
        machine.check()


@pytest.mark.parametrize("case", ["alias loop", "alias of itself"])
def test_printing_an_alias_loop_is_refused(case: str) -> None:
    make, name = MODEL_CASES[case]
    machine, _ = make()
    with deadline(), pytest.raises(ModelError, match=f"'{name}'"):
        print_tree(machine)


def test_render_and_print_of_a_hand_made_subregion_cycle_are_refused() -> None:
    """Straight to render() and print_tree(), past Machine.check: each walk notices."""
    machine, root = _container_cycle_made_by_hand()
    with deadline(), pytest.raises(ModelError, match="cycle of subregions"):
        render(root)
    with deadline(), pytest.raises(ModelError, match="cycle of subregions"):
        print_tree(machine)


def test_a_deep_but_acyclic_nesting_still_renders_and_prints() -> None:
    """9000 nested containers: past two of the cycle checks, which must see no cycle."""
    top = container("c0", 0x1000)
    inner = top
    for k in range(1, 9000):
        nxt = container(f"c{k}", 0x1000)
        inner.add_subregion(nxt, 0)
        inner = nxt
    leaf = ram("leaf", 0x100)
    inner.add_subregion(leaf, 0x100)
    machine = Machine([AddressSpace("memory", top)])
    with deadline(60):
        (view,) = render_machine(machine, check=False)
        text = print_tree(machine)
    assert [(r.mr, r.start, r.size) for r in view.ranges] == [(leaf, 0x100, 0x100)]
    assert text.count("\r\n") == 9001 + 2


def test_render_of_an_alias_cycle_through_a_container_is_refused() -> None:
    _, root = _alias_into_a_grandparent()
    with deadline(), pytest.raises(ModelError, match="'up'"):
        render(root)


def test_add_subregion_refuses_a_container_cycle() -> None:
    a = container("a", 0x1000)
    b = container("b", 0x1000)
    a.add_subregion(b, 0)
    with pytest.raises(ModelError, match=r"'a'.*'b'"):
        b.add_subregion(a, 0)
    with pytest.raises(ModelError, match="'a'"):
        a.add_subregion(a, 0)
    assert a.subregions == [b] and not b.subregions


def test_alias_into_its_container_that_shrinks_to_nothing_renders() -> None:
    """QEMU stops where the window becomes empty: a cycle in the graph, not in the walk.

    By hand: ``back`` (newest) shows ``c`` again from 0x800, where ``back`` itself lies
    at 0x1000, outside the window; ``leaf`` appears at 0x900, then at 0x100.
    """
    c = container("c", 0x1000)
    c.add_subregion(io("leaf", 0x100), 0x100)
    c.add_subregion(alias("back", c, 0, 0x800), 0x800)
    machine = Machine([AddressSpace("memory", c)])
    with deadline():
        (view,) = render_machine(machine)
    got = [(r.mr.label, r.start, r.size, r.offset_in_region) for r in view.ranges]
    assert got == [("leaf", 0x100, 0x100, 0), ("leaf", 0x900, 0x100, 0)]
    (want,) = render_machine_oracle(machine)
    assert got == [(r.mr.label, r.start, r.size, r.offset_in_region) for r in want.ranges]


def test_long_acyclic_alias_chain_renders() -> None:
    """Aliases of aliases, 4000 deep, printed and read back too."""
    bottom = ram("bottom", 0x1000)
    top: MemoryRegion = bottom
    for k in range(4000):
        top = alias(f"a{k}", top, 0, 0x1000)
    sys = container("sys", 1 << 64)
    sys.add_subregion(top, 0x5000)
    sys.add_subregion(io("x", 1), 0x100000)
    machine = Machine([AddressSpace("memory", sys)])
    with deadline(60):
        (view,) = render_machine(machine)
        text = print_tree(machine)
        again = print_tree(build_machine(parse_tree_document(text)))
    first = view.ranges[0]
    assert (first.mr, first.start, first.size) == (bottom, 0x5000, 0x1000)
    assert again == text


def test_printing_an_alias_chain_follows_each_link_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An alias prints its final target's type word: memoized, a chain of n aliases is
    followed O(n) times in all, not once per alias (O(n^2), 4 s for 10k before)."""
    bottom = ram("bottom", 0x1000)
    top: MemoryRegion = bottom
    for k in range(1000):
        top = alias(f"a{k}", top, 0, 0x1000)
    sys = container("sys", 1 << 64)
    sys.add_subregion(top, 0)
    hops = 0
    real = MemoryRegion.final_target

    def counting(self: MemoryRegion) -> MemoryRegion:
        nonlocal hops
        m = self
        while m.alias is not None:
            hops += 1
            m = m.alias
        return real(self)

    monkeypatch.setattr(MemoryRegion, "final_target", counting)
    text = print_tree(Machine([AddressSpace("memory", sys)]))
    assert text.count(" (prio 0, ram): alias a") == 1000
    assert hops <= 2 * 1000


def test_alias_chain_past_the_cycle_checks_renders() -> None:
    """9000 aliases deep: past two of the renderer's cycle checks (every 4096 hops), which
    must see a chain, not a cycle."""
    bottom = ram("bottom", 0x1000)
    top: MemoryRegion = bottom
    for k in range(9000):
        top = alias(f"a{k}", top, 0, 0x1000)
    sys = container("sys", 1 << 64)
    sys.add_subregion(top, 0x5000)
    x = io("x", 1)
    sys.add_subregion(x, 0x100000)
    with deadline(60):
        (view,) = render_machine(Machine([AddressSpace("memory", sys)]))
    assert [(r.mr, r.start, r.size) for r in view.ranges] == [
        (bottom, 0x5000, 0x1000),
        (x, 0x100000, 1),
    ]
