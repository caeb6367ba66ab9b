"""Lenient reading of pasted dumps: each kind of damage, applied to real QEMU output.

Every case starts from a fixture QEMU printed, damages it the way a terminal, mailer,
Markdown or source file does, and checks that ``lenient`` parsing gives back QEMU's
exact text and reports the repair at the right line — and that without ``lenient``
the damage is a ParseError with a line and column, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qmirror.errors import ParseError
from qmirror.rebuild.tree import build_machine
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.tree import parse_tree_document, print_like


# A booted pc: BARs mapped, so the tree is deep enough for tab-indented lines too.
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64" / "pc-booted"


def read(name: str) -> str:
    with open(FIXTURE / name, encoding="utf-8", newline="") as f:
        return f.read()


def lines_of(text: str) -> list[str]:
    return text.split("\r\n")[:-1]


def join(lines: list[str], eol: str = "\r\n") -> str:
    return eol.join(lines) + eol


def indent(text: str) -> str:  # a reST `.. code::` block or a Rust literal
    return join(["    " + ln if ln else ln for ln in lines_of(text)])


def prompt(text: str) -> str:  # copied from an interactive monitor
    return "(qemu) info mtree\r\n" + text + "(qemu) \r\n"


def quoted(text: str) -> str:  # a mail reply or a Markdown quote
    return join(["> " + ln for ln in lines_of(text)])


def fenced(text: str) -> str:  # a Markdown code block
    return "```\r\n" + text + "```\r\n"


def nbsp(text: str) -> str:  # a web page or a rich-text editor
    out = lines_of(text)
    i = next(i for i, ln in enumerate(out) if ln.startswith("  0"))
    out[i] = out[i].replace(" ", "\u00a0", 2)
    return join(out)


def tabs(text: str) -> str:  # an editor that turned 8 spaces into a tab
    out = lines_of(text)
    i = next(i for i, ln in enumerate(out) if ln.startswith("        "))
    out[i] = "\t" + out[i][8:]
    return join(out)


def mixed_eol(text: str) -> str:  # a file edited on two systems
    out = lines_of(text)
    return "\r\n".join(out[:10]) + "\r\n" + "\n".join(out[10:]) + "\n"


def wrapped(text: str) -> str:  # a mailer folding long lines at a space
    out: list[str] = []
    for ln in lines_of(text):
        if len(ln) > 100 and " alias " in ln:
            cut = ln.rfind(" ", 0, 90)
            out += [ln[:cut], ln[cut + 1 :]]
        else:
            out.append(ln)
    return join(out)


def no_final_blank(text: str) -> str:  # a copy that stopped one line short
    return text[:-2]


DAMAGE: list[tuple[str, Callable[[str], str], str]] = [
    ("indentation", indent, "uniform extra indentation"),
    ("prompt", prompt, "monitor prompt"),
    ("quoting", quoted, "quoting removed"),
    ("code fence", fenced, "code fence"),
    ("nbsp", nbsp, "Unicode spaces"),
    ("tabs", tabs, "tabs in the indentation"),
    ("mixed line endings", mixed_eol, "mixed line endings"),
    ("mail wrapping", wrapped, "wrapped line joined"),
    ("missing final blank line", no_final_blank, "missing blank line"),
]


@pytest.mark.parametrize(("name", "damage", "expect"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_tree_damage_is_repaired_to_qemus_exact_text(
    name: str, damage: Callable[[str], str], expect: str
) -> None:
    original = read("info-mtree-o-D.txt")
    damaged = damage(original)
    assert damaged != original, "the damage must change something"
    doc = parse_tree_document(damaged, lenient=True)
    assert any(expect in r.what for r in doc.repairs), [str(r) for r in doc.repairs]
    assert all(r.line >= 1 for r in doc.repairs)
    out = print_like(build_machine(doc), doc)
    if name == "mixed line endings":  # the ending most lines had is kept, and reported
        assert out.replace("\r\n", "\n") == original.replace("\r\n", "\n")
    else:
        assert out == original
    if name != "mixed line endings":  # a mix is only a problem for byte-exactness
        with pytest.raises(ParseError) as exc:
            build_machine(parse_tree_document(damaged))
        assert exc.value.line >= 1 and exc.value.column >= 1


FLAT_DAMAGE = [d for d in DAMAGE if d[0] not in ("mail wrapping", "tabs", "mixed line endings")]


@pytest.mark.parametrize(("name", "damage", "expect"), FLAT_DAMAGE, ids=[d[0] for d in FLAT_DAMAGE])
def test_flat_damage_is_repaired(name: str, damage: Callable[[str], str], expect: str) -> None:
    original = read("info-mtree-f-o.txt")
    doc = parse_flat(damage(original), lenient=True)
    assert any(expect in r.what for r in doc.repairs), [str(r) for r in doc.repairs]
    assert print_flat(doc) == original


def test_indented_dispatch_dump_keeps_its_tab_lines() -> None:
    original = read("info-mtree-f-d.txt")
    doc = parse_flat(indent(original), lenient=True)
    assert print_flat(doc) == original


def test_repair_points_at_the_original_line() -> None:
    damaged = prompt(read("info-mtree.txt"))
    doc = parse_tree_document(damaged, lenient=True)
    assert [r.line for r in doc.repairs][:1] == [1]
    broken = damaged.replace("(prio 0, i/o): hpet", "(prio 0, xx): hpet")
    bad_line = broken[: broken.index("(prio 0, xx)")].count("\r\n") + 1
    with pytest.raises(ParseError) as exc:
        parse_tree_document(broken, lenient=True)
    assert exc.value.line == bad_line  # a line of the text as given, not of the repaired one


def test_what_cannot_be_repaired_is_a_parse_error() -> None:
    text = read("info-mtree.txt").replace("(prio 0, i/o): hpet", "(prio 0, i/o) hpet")
    with pytest.raises(ParseError) as exc:
        parse_tree_document(text)
    assert "expected" in exc.value.reason and exc.value.column > 1
    # The forgiving reader reads the rest, and says which line it could not read.
    bad = text[: text.index("(prio 0, i/o) hpet")].count("\r\n") + 1
    doc = parse_tree_document(text, lenient=True)
    assert next(r.what for r in doc.repairs if r.line == bad).startswith(
        "malformed region line dropped"
    )
