"""The model rebuilt from a paste says what the paste lacked or left out (issue 15):
facts of gap ``paste`` on the regions (qmirror.rebuild.paste).

The pastes are a dump other people published (fixtures/public-corpus, read as
published) and HAND-MADE cuts of a capture QEMU 7.2 printed (never an edited fixture).
"""

from __future__ import annotations

from pathlib import Path

from qmirror.core.model import Fact, Machine, Source
from qmirror.rebuild.paste import PASTE_GAP
from qmirror.rebuild.tree import build_machine
from qmirror.text.tree import parse_tree_document


ROOT = Path(__file__).resolve().parents[2]
PC = ROOT / "fixtures" / "qemu-7.2" / "x86_64" / "pc"
CORPUS = ROOT / "fixtures" / "public-corpus"


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def paste_facts(machine: Machine) -> dict[str, list[Fact]]:
    """Region label (or ``(machine)``) -> its paste facts."""
    out: dict[str, list[Fact]] = {}
    for mr in machine.regions():
        for f in mr.facts:
            if f.gap == PASTE_GAP:
                out.setdefault(mr.label, []).append(f)
    for f in machine.facts:
        if f.gap == PASTE_GAP:
            out.setdefault("(machine)", []).append(f)
    return out


def test_intact_output_has_no_paste_facts() -> None:
    machine = build_machine(parse_tree_document(read(PC / "info-mtree.txt")))
    assert paste_facts(machine) == {}


def test_published_dump_with_an_elision_and_missing_alias_targets() -> None:
    # 135: `... skipped 30 virtio-mmio region` inside `system`, and aliases to gpex_mmio
    # and pcie-mmcfg-mmio, whose blocks the author did not paste.
    name = "135-aarch64-virt-vs-microvm-kvm-qp-wrapped-tab-elisions.txt"
    machine = build_machine(parse_tree_document(read(CORPUS / name), lenient=True))
    facts = paste_facts(machine)
    assert set(facts) == {"system", "gpex_mmio", "pcie-mmcfg-mmio"}
    (elided,) = facts["system"]
    assert (elided.attribute, elided.value, elided.source) == (
        "subregions",
        "the shown ones only",
        Source.DEFAULT,
    )
    assert "line 17" in elided.detail and "skipped 30 virtio-mmio" in elided.detail
    for target, line in (("gpex_mmio", 20), ("pcie-mmcfg-mmio", 24)):
        (implied,) = facts[target]
        assert (implied.attribute, implied.value) == ("line", "implied")
        assert f"line {line} of the paste" in implied.detail


def test_hand_made_fragment_without_its_header() -> None:
    tree = read(PC / "info-mtree.txt").split("\r\n")
    start = tree.index("address-space: memory")
    block = tree[start + 1 : tree.index("", start)]  # the region lines only
    cut = [*block[:5], "    ...", *block[-3:]]
    machine = build_machine(parse_tree_document("\n".join(cut) + "\n", lenient=True))
    facts = paste_facts(machine)
    (header,) = facts["(machine)"]
    assert (header.attribute, header.value) == ("address-space header", "implied")
    assert "'address-space: memory'" in header.detail and "line 1 of the paste" in header.detail
    assert [f.attribute for f in facts["system"]] == ["subregions"]
    assert "line 6" in facts["system"][0].detail
    # The region lines the paste has are not marked; the alias targets it lacks are.
    assert all(
        f.value == "implied"
        for label, fs in facts.items()
        if label not in ("(machine)", "system")
        for f in fs
    )
