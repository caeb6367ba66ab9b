"""Property tests: random trees built in code against a brute-force oracle and round trips.

* the renderer (:func:`qmirror.core.render.render_machine`) equals the oracle of
  ``tests/oracle.py``, written from the specification alone, on random trees
  (``tests/strategies.py``) and a few hand-picked ones: FlatView roots and sharing,
  every range and its flags; the oracle itself reproduces QEMU's own ``-f`` on every
  real capture under ``fixtures/``;
* print → parse → print of tree text is a fixed point wherever the text determines
  the tree (docs/text-gaps.md): with ``-D``, or without disabled regions; where the text
  hides disabled regions (G6) parsing may refuse, but only with a ParseError (the
  shrunk examples that used to crash or differ are kept as regression tests);
* flat text of rendered views prints, parses and prints again to the same bytes;
* QEMU's two listener passes (:func:`qmirror.sim.listener.topology_diff`), replayed on
  the old FlatView, give the new one — after a random transaction on the same
  regions, and between two unrelated machines (:func:`qmirror.sim.topology.transitions`).

CI runs a fixed number of examples, derandomized (the same inputs every run, so a
failure reproduces). ``HYPOTHESIS_PROFILE=thorough`` runs twenty times as many, random.
A failing example prints as the Python code that rebuilds its tree.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from oracle import OracleRange, render_machine_oracle
from strategies import NAMES, Drawn, machines

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
from qmirror.core.render import FlatRange, FlatView, flatview_root, render, render_machine
from qmirror.errors import ParseError
from qmirror.rebuild.tree import build_machine
from qmirror.sim.kvm import accel_suffix
from qmirror.sim.listener import TopologyEvent, topology_diff
from qmirror.sim.topology import same_by_value, transitions
from qmirror.text.flat import document_from_views, parse_flat, print_flat
from qmirror.text.tree import parse_tree_document, print_tree
from qmirror.verify.check import check, render_document
from qmirror.verify.compare import compare


settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SCALE = 20 if PROFILE == "thorough" else 1


def examples(n: int) -> settings:
    """The active profile with ``n`` examples in CI (``SCALE`` times as many otherwise)."""
    return settings(settings.get_profile(PROFILE), max_examples=n * SCALE)


def show(ranges: Sequence[FlatRange] | Sequence[OracleRange], drawn: Drawn) -> list[str]:
    """Ranges as readable lines, regions named as in the drawn code (``r3``)."""
    names = {id(r): f"r{i}" for i, r in enumerate(drawn.regions)}
    return [
        f"{r.start:#x}+{r.size:#x} {names.get(id(r.mr), r.mr.label)}@{r.offset_in_region:#x}"
        f"{' ro' if r.readonly else ''}{' nv' if r.nonvolatile else ''}"
        f"{'' if r.romd_mode else ' !romd'} log={r.dirty_log_mask}"
        for r in ranges
    ]


# -- the renderer against the oracle ----------------------------------------------------


@examples(400)
@given(machines())
def test_render_equals_oracle(drawn: Drawn) -> None:
    got = render_machine(drawn.machine)
    want = render_machine_oracle(drawn.machine)
    names = {id(r): f"r{i}" for i, r in enumerate(drawn.regions)}
    assert [(names.get(id(v.root)), [id(a) for a in v.address_spaces]) for v in got] == [
        (names.get(id(v.root)), [id(a) for a in v.address_spaces]) for v in want
    ]
    for g, w in zip(got, want, strict=True):
        assert show(g.ranges, drawn) == show(w.ranges, drawn)
        # show() names regions; identity must agree too (names repeat).
        assert [id(r.mr) for r in g.ranges] == [id(r.mr) for r in w.ranges]


@examples(200)
@given(machines(), st.data())
def test_render_of_a_stretch_is_the_whole_render_cut_there(
    drawn: Drawn, data: st.DataObject
) -> None:
    """What G3 inference re-renders per trial: ``render(root, lo, hi)`` is the whole
    render cut at ``lo`` and ``hi`` (merged inside, not across them)."""
    for view in render_machine(drawn.machine):
        if view.root is None:
            continue
        edges = sorted({0, 1 << 64, *(r.start for r in view.ranges), *(r.end for r in view.ranges)})
        point = st.one_of(st.sampled_from(edges), st.integers(0, 1 << 64))
        lo, hi = sorted((data.draw(point), data.draw(point)))
        cut = [
            (
                max(r.start, lo),
                min(r.end, hi),
                id(r.mr),
                r.offset_in_region + max(r.start, lo) - r.start,
                r.readonly,
                r.nonvolatile,
            )
            for r in view.ranges
            if max(r.start, lo) < min(r.end, hi)
        ]
        got = [
            (r.start, r.end, id(r.mr), r.offset_in_region, r.readonly, r.nonvolatile)
            for r in render(view.root, lo, hi)
        ]
        note(f"[{lo:#x}, {hi:#x})")
        assert got == cut


def _hand_picked() -> dict[str, Machine]:
    """Trees the random draw reaches rarely in CI's example budget."""
    out: dict[str, Machine] = {}
    # Same region twice, side by side, with offsets that do not continue: no merge.
    top = io("top", 0x1000)
    r2 = io("t", 0x1000)
    top.add_subregion(io("under", 0x1000), 0)
    top.add_subregion(r2, 0)
    top.add_subregion(alias("a", r2, 0x800, 0x1000), 0)
    out["discontinuous offsets"] = Machine([AddressSpace("memory", top)])
    # docs/memory-semantics-notes.md §2.6 example 2: a negative base through isa-bios.
    system = container("system", 1 << 64)
    pci = container("pci", 1 << 64)
    bios = MemoryRegion("pc.bios", RegionKind.ROM, 0x40000)
    pci.add_subregion(bios, 0xFFFC0000)
    pci.add_subregion(alias("isa-bios", bios, 0x20000, 0x20000), 0xE0000, 1)
    system.add_subregion(pci, 0, -1)
    for addr, size in (
        (0xE0000, 0x4000),
        (0xE4000, 0x4000),
        (0xE8000, 0x4000),
        (0xEC000, 0x4000),
        (0xF0000, 0x10000),
    ):
        system.add_subregion(alias("pam-pci", pci, addr, size), addr, 1)
    out["isa-bios"] = Machine([AddressSpace("memory", system)])
    # Example 3: readonly through an alias, merging across aliases of one region.
    system = container("system", 1 << 64)
    pcram = ram("pc.ram", 0x8000000)
    system.add_subregion(alias("ram-below-4g", pcram, 0, 0xC0000), 0)
    system.add_subregion(alias("pam-ram", pcram, 0xC0000, 0x4000), 0xC0000, 1)
    system.add_subregion(alias("pam-ram", pcram, 0xC4000, 0x4000), 0xC4000, 1)
    system.add_subregion(alias("pam-rom", pcram, 0xF0000, 0x10000, readonly=True), 0xF0000, 1)
    system.add_subregion(alias("ram-above", pcram, 0x100000, 0x7F00000), 0x100000)
    out["pam"] = Machine([AddressSpace("memory", system)])
    return out


@pytest.mark.parametrize("name", list(_hand_picked()))
def test_render_equals_oracle_on_hand_picked_trees(name: str) -> None:
    machine = _hand_picked()[name]
    (got,) = render_machine(machine)
    (want,) = render_machine_oracle(machine)
    key = [(r.mr.label, r.start, r.size, r.offset_in_region, r.readonly) for r in got.ranges]
    assert key == [
        (r.mr.label, r.start, r.size, r.offset_in_region, r.readonly) for r in want.ranges
    ]
    assert [id(r.mr) for r in got.ranges] == [id(r.mr) for r in want.ranges]
    if name == "isa-bios":
        # The spec's own conclusion: one merged line at offset 0x20000.
        assert ("pc.bios", 0xE0000, 0x20000, 0x20000, True) in key
    if name == "pam":
        assert ("pc.ram", 0xF0000, 0x10000, 0xF0000, True) in key
        assert ("pc.ram", 0, 0xC8000, 0, False) in key


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CAPTURES = sorted(p.parent for p in FIXTURES.glob("qemu-*/*/*/meta.json"))


def _read(path: Path) -> str:
    with path.open(encoding="utf-8", newline="") as f:
        return f.read()


def test_captures_are_there() -> None:
    """An empty parameter list would make the next test skip, not fail."""
    assert len(CAPTURES) >= 10, CAPTURES


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_oracle_equals_qemu_on_real_captures(capture: Path) -> None:
    """The oracle is right where it matters: on every capture it gives QEMU's own ``-f``
    (with the attributes the tree text hides filled in by the check pipeline)."""
    result = check(_read(capture / "info-mtree-o-D.txt"), _read(capture / "info-mtree-f-o.txt"))
    # qmirror's own check failing here is a regression, never a reason to skip.
    bad = [(v.address_spaces, v.status) for v in result.comparison.views if not v.ok]
    assert result.ok, f"qmirror's own check of {capture} fails: {bad}"
    views = [
        FlatView(
            v.root,
            [
                FlatRange(
                    r.mr,
                    r.start,
                    r.size,
                    r.offset_in_region,
                    r.readonly,
                    r.nonvolatile,
                    r.romd_mode,
                    r.dirty_log_mask,
                )
                for r in v.ranges
            ],
            v.address_spaces,
        )
        for v in render_machine_oracle(result.machine)
    ]
    ours = render_document(
        result.machine,
        views,
        owners=result.qemu.owners,
        accel=result.accel.value,
        dialect=result.qemu.dialect,
    )
    assert compare(ours, result.qemu, accel=result.accel.value is not None).ok


def test_oracle_alone_on_the_documented_example() -> None:
    """The oracle itself on docs/memory-semantics-notes.md §2.6 example 1, derived by hand there."""
    a = container("A", 0x8000)
    b = container("B", 0x4000)
    b.add_subregion(io("D", 0x1000), 0)
    b.add_subregion(io("E", 0x1000), 0x2000)
    a.add_subregion(io("C", 0x6000), 0, priority=1)
    a.add_subregion(b, 0x2000, priority=2)
    (view,) = render_machine_oracle(Machine([AddressSpace("x", a)]))
    got = [(r.mr.label, r.start, r.size, r.offset_in_region) for r in view.ranges]
    assert got == [
        ("C", 0, 0x2000, 0),
        ("D", 0x2000, 0x1000, 0),
        ("C", 0x3000, 0x1000, 0x3000),
        ("E", 0x4000, 0x1000, 0),
        ("C", 0x5000, 0x1000, 0x5000),
    ]


# -- tree text: print -> parse -> print -----------------------------------------------------


_counter = itertools.count()
#: Unique names: the text then says which block every alias targets (no G5 guess).
UNIQUE_NAMES: st.SearchStrategy[str | None] = st.builds(lambda: f"mr{next(_counter)}")


def _round_trip(drawn: Drawn, *, owners: bool, disabled: bool) -> None:
    first = print_tree(drawn.machine, owners=owners, disabled=disabled)
    note(first)
    again = print_tree(build_machine(parse_tree_document(first)), owners=owners, disabled=disabled)
    assert again == first


@examples(150)
@given(machines(names=UNIQUE_NAMES, null_roots=False))
def test_tree_text_with_disabled_shown_is_a_fixed_point(drawn: Drawn) -> None:
    """``-D`` prints every region: the text determines the tree (names unique)."""
    for owners in (False, True):
        _round_trip(drawn, owners=owners, disabled=True)


@examples(150)
@given(machines(names=NAMES, disabled=False, null_roots=False))
def test_tree_text_without_disabled_regions_is_a_fixed_point(drawn: Drawn) -> None:
    """Nothing hidden: the text determines the tree even with repeated names."""
    for owners in (False, True):
        _round_trip(drawn, owners=owners, disabled=False)


@examples(150)
@given(machines(names=NAMES, null_roots=False))
def test_tree_text_hiding_disabled_regions_parses_or_refuses_cleanly(drawn: Drawn) -> None:
    """Without ``-D`` disabled parents are hidden (G6) and sometimes cannot be placed
    back; parsing may then refuse the text, but only with a ParseError — and what it
    accepts must print again without error."""
    for owners in (False, True):
        text = print_tree(drawn.machine, owners=owners, disabled=False)
        note(text)
        try:
            machine = build_machine(parse_tree_document(text))
        except ParseError as err:
            assert err.line >= 1 and err.column >= 1
            continue
        print_tree(machine, owners=owners, disabled=False)
        render_machine(machine)


def _found_by_the_properties() -> dict[str, Machine]:
    """Shrunk examples of the round-trip properties that failed before the fixes in
    ``qmirror/treetext.py`` marked "Reliability fix (issue 6)"; printed without ``-D``."""
    out: dict[str, Machine] = {}
    # A hidden child's overflow marker glued to the closing line of two blocks that
    # print `dev`: the two printings had different stand-ins (ValueError from zip).
    dev = MemoryRegion("dev", RegionKind.RAMD, 0x423)
    dev.add_subregion(io("hidden", 0x3360, enabled=False), 0xFFFFFFFFFFFFF000, -2)
    sys = container("sys", 1 << 64)
    sys.add_subregion(dev, 0)
    out["marker in two printings"] = Machine(
        [AddressSpace("memory", sys), AddressSpace("dma", dev)]
    )
    # The same with a hidden alias queued from the other printing (ValueError from index).
    n7 = io("n7", 0x1000)
    n6 = container("n6", 0x1000)
    n6.add_subregion(n7, 0)
    n3 = io("n3", 0x1000, enabled=False)
    for kid in (n6, io("n5", 0x1000), io("n4", 0x1000)):
        n3.add_subregion(kid, 0)
    n2 = io("n2", 0x1000)
    n2.add_subregion(n3, 0)
    n0 = io("n0", 0x1000)
    n0.add_subregion(alias("n1", n7, 0, 0x1000, enabled=False), 0xFFFFFFFFFFFFF800)
    n0.add_subregion(n2, 0)
    out["hidden alias beside two printings"] = Machine(
        [AddressSpace("memory", n0), AddressSpace("io", n2)]
    )
    # A hidden root whose stand-in wrapped past 2**64 and printed a marker of its own.
    top = container("sys", 1 << 64, enabled=False)
    top.add_subregion(ram("top", 0x3000), 0xFFFFFFFFFFFFFFFF, -(2**31))
    out["wrapping stand-in"] = Machine([AddressSpace("memory", top)])
    # A hidden alias target: the alias line still says `ramd`, the stand-in said `i/o`.
    target = MemoryRegion("target", RegionKind.RAMD, 0x19D, enabled=False)
    out["hidden alias target"] = Machine([AddressSpace("memory", alias("a", target, 1, 0x800))])
    return out


@pytest.mark.parametrize("name", list(_found_by_the_properties()))
def test_round_trips_that_failed_before(name: str) -> None:
    machine = _found_by_the_properties()[name]
    first = print_tree(machine)
    assert print_tree(build_machine(parse_tree_document(first))) == first


# -- flat text ------------------------------------------------------------------------------


@examples(150)
@given(machines(), st.booleans(), st.booleans())
def test_flat_text_is_a_fixed_point(drawn: Drawn, owners: bool, kvm: bool) -> None:
    views = render_machine(drawn.machine)
    doc = document_from_views(views, owners=owners, accel_suffix=accel_suffix if kvm else None)
    first = print_flat(doc)
    note(first)
    again = print_flat(parse_flat(first))
    assert again == first


# -- listeners --------------------------------------------------------------------------------


Same = Callable[[FlatRange, FlatRange], bool]


def replay(old: Sequence[FlatRange], events: list[TopologyEvent]) -> list[FlatRange]:
    """Apply the events to ``old`` as a listener keeping a copy of the view would."""
    kinds = [e.kind for e in events]
    # Pass 1 (deletions) entirely before pass 2 (additions).
    if "del" in kinds and any(k != "del" for k in kinds):
        assert max(i for i, k in enumerate(kinds) if k == "del") < min(
            i for i, k in enumerate(kinds) if k != "del"
        )
    deleted = {id(e.old) for e in events if e.kind == "del"}
    assert len(deleted) == kinds.count("del"), "a range deleted twice"
    kept = [r for r in old if id(r) not in deleted]
    added = [e.new for e in events if e.kind == "add"]
    out = [*kept, *(r for r in added if r is not None)]
    out.sort(key=lambda r: r.start)
    return out


def check_replay(
    old: Sequence[FlatRange], new: Sequence[FlatRange], events: list[TopologyEvent], same: Same
) -> None:
    got = replay(old, events)
    assert len(got) == len(new)
    for g, n in zip(got, new, strict=True):
        assert same(g, n), (g, n)
    # Unchanged ranges are reported as nop, never as a delete plus an add.
    nops = [e for e in events if e.kind == "nop"]
    assert len(nops) == sum(1 for o in old if any(same(o, n) for n in new))
    for e in events:
        if e.kind in ("log_start", "log_stop"):
            assert e.old is not None and e.new is not None
            assert e.old.dirty_log_mask != e.new.dirty_log_mask


OPS = st.sampled_from(
    [
        "toggle",
        "move",
        "priority",
        "readonly",
        "nonvolatile",
        "alias_offset",
        "size",
        "romd",
        "log",
        "remove",
    ]
)


def transact(drawn: Drawn, ops: list[tuple[str, int, int]]) -> list[str]:
    """Apply a random transaction to the drawn regions in place; return what was done."""
    done = []
    regions = drawn.regions
    for op, which, value in ops:
        mr = regions[which % len(regions)]
        name = f"r{which % len(regions)}"
        container = mr.container
        if op == "toggle":
            mr.enabled = not mr.enabled
        elif op in ("move", "priority") and container is not None:
            # memory_region_set_address and a re-add with another priority: del + add.
            container.del_subregion(mr)
            addr = (mr.addr + value * 0x400) % (1 << 64) if op == "move" else mr.addr
            prio = mr.priority + (value % 3 - 1) if op == "priority" else mr.priority
            container.add_subregion(mr, addr, prio)
        elif op == "remove" and container is not None:
            container.del_subregion(mr)
        elif op == "readonly":
            mr.readonly = not mr.readonly
        elif op == "nonvolatile":
            mr.nonvolatile = not mr.nonvolatile
        elif op == "alias_offset" and mr.alias is not None:
            mr.alias_offset = (mr.alias_offset + value * 0x100) % (1 << 64)
        elif op == "size" and mr.size not in (0, 1 << 64):
            mr.size = max(0, mr.size + value * 0x100)
        elif op == "romd" and mr.kind is RegionKind.ROMD:
            mr.romd_mode = not mr.romd_mode
        elif op == "log":
            mr.dirty_log_mask = value % 8
        else:
            continue
        done.append(f"{op} {name} {value}")
    return done


@examples(300)
@given(
    machines(null_roots=False),
    st.lists(st.tuples(OPS, st.integers(0, 20), st.integers(-3, 3)), min_size=1, max_size=5),
)
def test_listener_diff_replayed_on_the_old_view_gives_the_new_one(
    drawn: Drawn, ops: list[tuple[str, int, int]]
) -> None:
    """A transaction on the same regions (QEMU's case: ranges compared by identity)."""
    machine = drawn.machine
    before = {id(v.root): v for v in render_machine(machine)}
    old_ranges = {id(a): before[id(flatview_root(a.root))].ranges for a in machine.address_spaces}
    note("\n".join(transact(drawn, ops)))
    after = {id(v.root): v for v in render_machine(machine)}
    for a in machine.address_spaces:
        old = old_ranges[id(a)]
        new = after[id(flatview_root(a.root))].ranges
        note(f"{a.name}: {show(old, drawn)} -> {show(new, drawn)}")
        check_replay(old, new, topology_diff(old, new), lambda x, y: x.same_as(y))


@examples(150)
@given(machines(names=NAMES), machines(names=NAMES))
def test_transitions_between_two_readings_replay(first: Drawn, second: Drawn) -> None:
    """Two unrelated machines (two readings share no objects: ranges compared by value)."""
    for old, new in ((first, second), (second, first), (first, first)):
        steps = transitions(old.machine, new.machine)
        for t in steps:
            check_replay(t.old_ranges, t.new_ranges, t.events, same_by_value)
        if old is new:
            assert not any(t.changed for t in steps)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_replay_helper_can_fail(n: int) -> None:
    """The replay check is not vacuous: dropping any event of a real diff breaks it."""
    sys = container("sys", 1 << 64)
    low = ram("low", 0x10000)
    sys.add_subregion(low, 0)
    mmio = io("mmio", 0x1000)
    machine = Machine([AddressSpace("memory", sys)])
    (before,) = render_machine(machine)
    sys.add_subregion(mmio, 0x4000, 1)
    (after,) = render_machine(machine)
    events = topology_diff(before.ranges, after.ranges)
    assert [e.kind for e in events] == ["del", "add", "add", "add"]
    broken = events[:n] + events[n + 1 :]
    with pytest.raises(AssertionError):
        check_replay(before.ranges, after.ranges, broken, lambda x, y: x.same_as(y))
