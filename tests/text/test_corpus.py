"""Real dumps from other QEMU versions and builds (fixtures/public-corpus, see SOURCES.md).

Expectations come from what each source is known to be: its QEMU era and the damage
its publication did to it, as SOURCES.md records.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmirror.core.render import render_machine
from qmirror.errors import ParseError
from qmirror.rebuild.tree import build_machine
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.tree import parse_tree_document, print_like


CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "public-corpus"


def read(name: str) -> str:
    with open(CORPUS / name, encoding="utf-8", newline="") as f:
        return f.read()


#: file, dialect we must detect, whether the text is intact (byte-exact round trip).
TREES = [
    ("010-x86-q35-intel-iommu-pt-kvm.txt", "7.0", False),
    ("011-x86-pc-i440fx-kvm-2cpu-pre7.txt", "5.1", True),
    ("012-x86-pc-i440fx-tcg-smm-2cpu-pre7.txt", "5.1", True),
    ("036-mips64el-loongson-ls3a7a-downstream.txt", "2.11", True),
    ("038-xtensa-lx60-old-RW-rst.txt", "2.4", False),
]
FLATS = [
    ("002-q35-kvm-vfio-synic-16cpu-flatview-rust-embedded.txt", "7.0", False, 3),
    ("013-x86-pc-i440fx-tcg-flatview.txt", "7.0", False, 5),
    ("037-loongarch-ls3a-kvm-flatview-interleaved-debug.txt", "4.1", False, 3),
]


def test_the_corpus_is_all_covered() -> None:
    named = {t[0] for t in TREES} | {f[0] for f in FLATS}
    assert named == {p.name for p in CORPUS.glob("0*.txt")}


@pytest.mark.parametrize(("name", "dialect", "intact"), TREES, ids=[t[0][:3] for t in TREES])
def test_tree_dumps_parse_reprint_and_render(name: str, dialect: str, intact: bool) -> None:
    text = read(name)
    doc = parse_tree_document(text, lenient=True)
    assert doc.dialect.name == dialect, str(doc.detection)
    machine = build_machine(doc)
    out = print_like(machine, doc)
    if intact:
        assert not doc.repairs
        assert out == text
    else:
        assert doc.repairs
        # The repaired text is canonical QEMU output: it parses strictly and is a fixed point.
        again = parse_tree_document(out)
        assert again.dialect.name == dialect
        assert print_like(build_machine(again), again) == out
    views = render_machine(machine)
    assert views and any(v.ranges for v in views)


@pytest.mark.parametrize(
    ("name", "dialect", "intact", "views"), FLATS, ids=[f[0][:3] for f in FLATS]
)
def test_flat_dumps_parse_and_reprint(name: str, dialect: str, intact: bool, views: int) -> None:
    text = read(name)
    if not intact:
        with pytest.raises(ParseError):
            parse_flat(text)
    doc = parse_flat(text, lenient=True)
    assert doc.dialect.name == dialect
    assert len(doc.views) == views
    out = print_flat(doc)
    assert print_flat(parse_flat(out)) == out


def test_rust_embedding_is_undone() -> None:
    """002: 7 extra spaces on every line, `\\"` for every quote (SOURCES.md)."""
    doc = parse_flat(read("002-q35-kvm-vfio-synic-16cpu-flatview-rust-embedded.txt"), lenient=True)
    whats = " | ".join(r.what for r in doc.repairs)
    assert 'escapes \\" made "' in whats
    assert "uniform extra indentation of 7 spaces" in whats
    assert doc.views[0].address_spaces[0].name == "I/O"


def test_interleaved_debug_output_keeps_the_complete_copy() -> None:
    """037: a debug printf cut the first copy; the output restarts at FlatView #0."""
    doc = parse_flat(read("037-loongarch-ls3a-kvm-flatview-interleaved-debug.txt"), lenient=True)
    assert any("starts again" in r.what and r.line == 11 for r in doc.repairs)
    assert all("huxueshi" not in r.name for v in doc.views for r in v.ranges)
    assert any("kvm" in r.accel for v in doc.views for r in v.ranges)


def test_rst_indentation_and_access_letters() -> None:
    """038: a reST code block (4 spaces), QEMU 2.6–2.8 access letters."""
    doc = parse_tree_document(read("038-xtensa-lx60-old-RW-rst.txt"), lenient=True)
    assert [r.what for r in doc.repairs] == ["uniform extra indentation of 4 spaces removed"]
    machine = build_machine(doc)
    flash = next(mr for mr in machine.regions() if mr.name == "lx60.io.flash")
    assert flash.readonly  # R-
    window = next(mr for mr in machine.regions() if mr.name == "lx60.flash")
    assert window.alias is flash and not window.readonly  # RW: the letters say it
    fact = window.fact("readonly")
    assert fact is not None and fact.source.value == "text"


def test_regions_named_system_stay_distinct() -> None:
    """036: besides the root `system`, two other MRs called `system` (SOURCES.md): one
    printed 0-7ffffffffffffffe (an alias target), one inside the main map."""
    doc = parse_tree_document(read("036-mips64el-loongson-ls3a7a-downstream.txt"))
    systems = {mr for mr in build_machine(doc).regions() if mr.name == "system"}
    assert sorted((mr.size, mr.container is not None) for mr in systems) == [
        (0x10000, True),
        (0x7FFFFFFFFFFFFFFF, False),
        (1 << 64, False),
    ]


def test_strict_parse_names_the_damage_line() -> None:
    with pytest.raises(ParseError) as exc:
        parse_tree_document(read("038-xtensa-lx60-old-RW-rst.txt"))
    assert exc.value.line == 1
