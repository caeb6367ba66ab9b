"""Every dialect of ``info mtree``: detected, parsed, modelled and printed back.

Inputs named HANDWRITTEN_* were written by hand from the reference's format history
(docs/memory-semantics-notes.md §4.8, §4.9) for versions no public dump shows; expected values
are derived by hand from the same rules. Real dumps of other dialects are covered by
tests/text/test_corpus.py; QEMU 7.2 by tests/verify/test_fixtures.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmirror.core.render import render_machine
from qmirror.errors import InputError
from qmirror.rebuild.tree import build_machine
from qmirror.text.dialect import DIALECTS, for_version, parse_version
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.tree import parse_tree_document, print_like, print_tree
from qmirror.verify.check import check, load_tree


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64"


def text(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


HANDWRITTEN_1_3 = text(  # QEMU 1.3–2.3: bare headers, level-0 roots, letters, `aliases`
    "memory",
    "0000000000000000-7ffffffffffffffe (prio 0, RW): system",
    "  0000000000000000-0000000007ffffff (prio 0, RW): alias ram-below-4g @pc.ram "
    "0000000000000000-0000000007ffffff",
    "  00000000000c0000-00000000000dffff (prio 1, R-): pc.rom",
    "  00000000fec00000-00000000fec00fff (prio 0, RW): ioapic",
    "I/O",
    "0000000000000000-000000000000ffff (prio 0, RW): io",
    "  0000000000000070-0000000000000071 (prio 0, RW): rtc",
    "cpu-memory",
    "0000000000000000-7ffffffffffffffe (prio 0, RW): system",
    "  0000000000000000-0000000007ffffff (prio 0, RW): alias ram-below-4g @pc.ram "
    "0000000000000000-0000000007ffffff",
    "  00000000000c0000-00000000000dffff (prio 1, R-): pc.rom",
    "  00000000fec00000-00000000fec00fff (prio 0, RW): ioapic",
    "aliases",
    "pc.ram",
    "0000000000000000-0000000007ffffff (prio 0, RW): pc.ram",
)

HANDWRITTEN_2_9_TREE = text(  # 2.9: type words, aliases always i/o, disabled shown
    "address-space: memory",
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): system",
    "    0000000000000000-0000000007ffffff (prio 0, i/o): alias ram-below-4g @pc.ram "
    "0000000000000000-0000000007ffffff",
    "",
    "address-space: I/O",
    "  0000000000000000-000000000000ffff (prio 0, i/o): io",
    "",
    "address-space: PIIX3",
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): bus master container",
    "    0000000000000000-ffffffffffffffff (prio 0, i/o): alias bus master @system "
    "0000000000000000-ffffffffffffffff [disabled]",
    "",
    "memory-region: pc.ram",
    "  0000000000000000-0000000007ffffff (prio 0, ram): pc.ram",
    "",
    "memory-region: system",
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): system",
    "    0000000000000000-0000000007ffffff (prio 0, i/o): alias ram-below-4g @pc.ram "
    "0000000000000000-0000000007ffffff",
    "",
)
HANDWRITTEN_2_9_FLAT = text(  # 2.9/2.10: one `address-space (flat view)` block per AS
    "address-space (flat view): memory",
    "  0000000000000000-0000000007ffffff (prio 0, ram): pc.ram",
    "",
    "address-space (flat view): I/O",
    "  0000000000000000-000000000000ffff (prio 0, i/o): io",
    "",
    "address-space (flat view): PIIX3",
    "  No rendered FlatView for address space 'PIIX3'",
    "",
)

HANDWRITTEN_5_0 = text(  # 5.0: target words, disabled shown, marker after the indent
    "address-space: memory",
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): system",
    "    0000000000000000-0000000007ffffff (prio 0, ram): alias ram-below-4g @pc.ram "
    "0000000000000000-0000000007ffffff",
    "    0000000000010000-000000000001ffff (prio 0, i/o): pm [disabled]",
    "      0000000000010000-0000000000010003 (prio 0, i/o): evt",
    "    [DETECTED OVERFLOW!] ffffffffffff0000-000000000000ffff (prio 0, i/o): over",
    "",
    "memory-region: pc.ram",
    "  0000000000000000-0000000007ffffff (prio 0, ram): pc.ram",
    "",
)

HANDWRITTEN_RAM_DEVICE = text(  # 7.2 format; a VFIO BAR mmap is a RAM device (ramd)
    "address-space: memory",
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): system",
    "    0000000000000000-0000000007ffffff (prio 0, ram): pc.ram",
    "    00000000fe000000-00000000fe0fffff (prio 1, ramd): 0000:01:00.0 BAR 0 mmaps[0]",
    "",
)
FLAT_RAM_DEVICE_KVM = text(
    "FlatView #0",
    ' AS "memory", root: system',
    " Root memory region: system",
    "  0000000000000000-0000000007ffffff (prio 0, ram): pc.ram KVM",
    "  00000000fe000000-00000000fe0fffff (prio 1, ramd): 0000:01:00.0 BAR 0 mmaps[0] KVM",
    "",
)


def test_versions_map_to_dialects() -> None:
    assert parse_version("7.2.22") == (7, 2)
    assert for_version("7.2").name == "7.0"
    assert for_version("5.0").alias_target_word and not for_version("4.2").alias_target_word
    assert for_version("2.10").flat == "per-as" and for_version("2.11").flat == "flatview"
    assert for_version("2.8").access_letters and not for_version("2.9").access_letters
    assert for_version("5.1").disabled == "hidden" and for_version("5.0").disabled == "shown"
    assert for_version("11.0").container_word
    assert for_version("4.1").accel_word == "kvm" and for_version("5.0").accel_word == "KVM"
    with pytest.raises(InputError, match=r"before 1\.3"):
        for_version("1.2")
    assert [d.since for d in DIALECTS] == sorted(d.since for d in DIALECTS)


@pytest.mark.parametrize(
    ("name", "tree", "dialect"),
    [
        ("1.3", HANDWRITTEN_1_3, "1.3"),
        ("2.9", HANDWRITTEN_2_9_TREE, "2.11"),  # 2.9 and 2.11 print trees alike
        ("5.0", HANDWRITTEN_5_0, "5.0"),
        ("ramd", HANDWRITTEN_RAM_DEVICE, "7.0"),
    ],
)
def test_hand_written_dialects_are_detected_and_round_trip(
    name: str, tree: str, dialect: str
) -> None:
    doc = parse_tree_document(tree)
    assert doc.dialect.name == dialect, str(doc.detection)
    machine = build_machine(doc)
    assert print_like(machine, doc) == tree
    render_machine(machine)


def test_1_3_model_and_render() -> None:
    """Letters: R- is read-only; RW leaves are taken for MMIO (RAM and MMIO look alike)."""
    loaded = load_tree(HANDWRITTEN_1_3)
    m = loaded.machine
    assert [a.name for a in m.address_spaces] == ["memory", "I/O", "cpu-memory"]
    assert m.address_spaces[0].root is m.address_spaces[2].root  # one `system`
    views = render_machine(m)
    memory = next(v for v in views if v.address_spaces[0].name == "memory")
    assert [a.name for a in memory.address_spaces] == ["memory", "cpu-memory"]
    assert [
        (r.start, r.size, r.mr.label, r.offset_in_region, r.readonly) for r in memory.ranges
    ] == [
        (0x0, 0xC0000, "pc.ram", 0, False),
        (0xC0000, 0x20000, "pc.rom", 0, True),
        (0xE0000, 0x8000000 - 0xE0000, "pc.ram", 0xE0000, False),
        (0xFEC00000, 0x1000, "ioapic", 0, False),
    ]
    pc_ram = next(mr for mr in m.regions() if mr.name == "pc.ram")
    fact = pc_ram.fact("kind")
    assert fact is not None and "RAM from MMIO" in fact.detail


def test_2_9_flat_layout_and_check() -> None:
    doc = parse_flat(HANDWRITTEN_2_9_FLAT)
    assert doc.dialect.flat == "per-as"
    assert [v.address_spaces[0].name for v in doc.views] == ["memory", "I/O", "PIIX3"]
    assert print_flat(doc) == HANDWRITTEN_2_9_FLAT
    result = check(HANDWRITTEN_2_9_TREE, HANDWRITTEN_2_9_FLAT, strict=True)
    assert result.ok, [(v.address_spaces, v.status, v.diffs) for v in result.comparison.views]


def test_late_overflow_marker_and_shown_disabled_subtree() -> None:
    machine = build_machine(parse_tree_document(HANDWRITTEN_5_0))
    pm = next(mr for mr in machine.regions() if mr.name == "pm")
    assert not pm.enabled and not pm.synthetic and [c.label for c in pm.subregions] == ["evt"]


def test_ram_device_gets_a_kvm_slot() -> None:
    assert check(HANDWRITTEN_RAM_DEVICE, FLAT_RAM_DEVICE_KVM, accel="kvm", strict=True).ok


def test_printing_a_real_machine_in_the_2026_dialect() -> None:
    """§4.8: `container` for any region not mapped in a container, `io` included."""
    machine = load_tree(read(FIXTURES / "q35" / "info-mtree.txt")).machine
    out = print_tree(machine, eol="\n", dialect=for_version("11.0")).splitlines()
    assert "  0000000000000000-ffffffffffffffff (prio 0, container): system" in out
    assert "  0000000000000000-000000000000ffff (prio 0, container): io" in out
    assert any(
        ln.endswith("(prio 0, container): alias memory @system 0000000000000000-ffffffffffffffff")
        for ln in out
    )
    assert any("(prio 1, i/o): alias pam-pci @pci" in ln for ln in out)  # pci is mapped
    assert "    0000000000000000-ffffffffffffffff (prio -1, i/o): pci" in out
    again = parse_tree_document("\n".join(out) + "\n")
    assert again.dialect.container_word


@pytest.mark.parametrize("version", ["2.4", "2.11", "5.0", "5.1", "7.0"])
def test_printing_a_real_machine_in_older_dialects_is_a_fixed_point(version: str) -> None:
    """Print q35 (7.2, -D) as older QEMUs would, read it back: same text, same FlatViews."""
    src = read(FIXTURES / "q35" / "info-mtree-o-D.txt")
    machine = load_tree(src).machine
    dialect = for_version(version)
    out = print_tree(machine, disabled=True, eol="\n", dialect=dialect)
    doc = parse_tree_document(out, dialect=dialect)
    again = build_machine(doc)
    assert print_tree(again, disabled=True, eol="\n", dialect=dialect) == out
    if version == "5.1":  # one block per address space: cpu-memory-0 and memory repeat it
        assert out.count("address-space: ") == len(machine.address_spaces)
