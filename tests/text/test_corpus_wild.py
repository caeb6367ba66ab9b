"""Dumps from the wild: what the forgiving reader makes today of pasted `info mtree` text.

``fixtures/public-corpus/corpus.json`` lists every dump other people published (see
SOURCES.md for where each one comes from and what damage it carries). These tests pin
three things:

* the dumps stay as published: each file's sha256 is in the manifest;
* the manifest is well formed, and its damage tags come from the vocabulary that
  SOURCES.md defines;
* the reader's outcome per dump today (``EXPECTED_TODAY``), and for a dump it reads,
  that the re-print through the model keeps >= 90 % of its range lines (each text of a
  paste read on its own: a tree and its ``-f``, two VMs, both sides of a diff). When
  the lenient reader learns a new kind of damage, a dump flips from "refused" to "read"
  and this table is changed on purpose, in the same commit. A refusal must be a ParseError (or
  ModelError) pointing into the text, never another exception.

``scripts/corpus-stats`` prints the same outcomes with reasons, repairs and the share of
range lines kept in the re-print.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from qmirror.errors import ParseError, QmirrorError
from qmirror.rebuild.tree import build_machine
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.forgiving import each_text
from qmirror.text.tree import parse_tree_document, print_like


CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "public-corpus"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "corpus.json").read_text(encoding="utf-8"))
BY_FILE = {e["file"]: e for e in MANIFEST}

#: The damage vocabulary of SOURCES.md ("Damage tags").
DAMAGE = frozenset(
    [
        "prompt",
        "banner",
        "quote-prefix",
        "diff-prefix",
        "comment-prefix",
        "code-embedded",
        "escaped-quotes",
        "markup",
        "reindented",
        "indent-broken",
        "tab",
        "nbsp",
        "wrapped",
        "trailing-space",
        "elided",
        "fragment-no-header",
        "truncated",
        "no-final-blank",
        "blank-lines-lost",
        "crlf",
        "qp-decoded",
        "prose-interleaved",
        "debug-interleaved",
        "hand-edited",
    ]
)
SOURCE_KINDS = {"github-file", "github-issue", "mailing-list", "blog", "qa", "docs", "ctf"}

#: What the reader does with each dump today. Flip an entry to "read" deliberately when
#: the forgiving reader learns to read it (scripts/corpus-stats shows why it refuses).
EXPECTED_TODAY = {
    "002-q35-kvm-vfio-synic-16cpu-flatview-rust-embedded.txt": "read",
    "010-x86-q35-intel-iommu-pt-kvm.txt": "read",
    "011-x86-pc-i440fx-kvm-2cpu-pre7.txt": "read",
    "012-x86-pc-i440fx-tcg-smm-2cpu-pre7.txt": "read",
    "013-x86-pc-i440fx-tcg-flatview.txt": "read",
    "036-mips64el-loongson-ls3a7a-downstream.txt": "read",
    "037-loongarch-ls3a-kvm-flatview-interleaved-debug.txt": "read",
    "038-xtensa-lx60-old-RW-rst.txt": "read",
    "100-x86-microvm-kvm-mmio-io-fragment.txt": "read",
    "101-loongarch64-loongson3-ls7a-docs-patch-diff-prefix.txt": "read",
    "102-any-none-qtest-6.2.50-prompt-indented.txt": "read",
    "103-x86-q35-8.2-device-memory-quoted-elided.txt": "read",
    "104-x86-pc-kvm-virtio-gpu-memory-as-only-blog.txt": "read",
    "105-riscv64-spike-9.1.0-shell-banner-prompt.txt": "read",
    "106-x86-pc-kvm-vfio-accel-labels-rfc-triple-quoted-wrapped.txt": "read",
    "107-x86-q35-ovmf-kvm-tree-excerpt-and-flat-with-prose.txt": "read",
    "108-x86-microvm-kvm-tcg-accel-flat-double-quoted-truncated.txt": "read",
    "109-arm-exynos4210-pl330-tree-and-flat-wrapped.txt": "read",
    "110-arm-stm32l4x5-cortex-m-flatview-unified-diff-wrapped.txt": "read",
    "111-ppc64-pseries-nvdimm-nbsp-wrapped-two-fragments.txt": "read",
    "112-aarch64-raspi-bcm2835-otp-flatview-diff-elided.txt": "read",
    "113-sh4-r2d-pci-isa-overlap-flatview-quoted-fragment.txt": "read",
    "114-ppc64-pseries-kvm-flatview-shell-and-monitor-prompt.txt": "read",
    "115-sh4-r2d-pflash-prompt-crlf-qp-wrapped.txt": "read",
    "116-aarch64-raspi3b-grouped-as-headers-prompt-indented.txt": "read",
    "117-mips-malta-gt64120-disabled-wrapped.txt": "read",
    "118-aarch64-hitcon-ctf-secure-world-no-blank-lines.txt": "read",
    "119-aarch64-virt-smmuv3-secure-views-uppercase-prompt-elided.txt": "read",
    "120-arm-stm32f2xx-old-8digit-RW-no-header-hand-mangled.txt": "read",
    "121-arm-stm32-old-memory-header-gdb-monitor-tabs-elided.txt": "read",
    "122-arm-stm32-old-memory-header-gdb-monitor-tab-and-spaces.txt": "read",
    "123-aarch64-virt-kvm-pvtime-flat-elided-dots.txt": "read",
    "124-aarch64-virt-memory-region-system-zig-line-comments.txt": "read",
    "125-aarch64-virt-cortex-a53-buildroot-lab-from-io-as-trailing-prompt.txt": "read",
    "126-riscv64-virt-gpex-root-truncated-by-author.txt": "read",
    "127-sh4-r2d-tree-and-flat-quoted-reply-indented.txt": "read",
    "128-microblaze-xlnx-ethlite-unimp-mdio-flat-no-as-lines.txt": "read",
    "129-ppc64-pseries-numa-memdev-kvm-label-rfc-quoted-fragment.txt": "read",
    "130-x86-pc-i440fx-kvm-cirrus-RW-letters-disabled-blog.txt": "read",
    "131-x86-pc-i440fx-libvirt-flat-owners-markdown-escaped-confluence.txt": "read",
    "132-x86-pc-owner-suffix-before-after-qp-indented.txt": "read",
    "133-x86-q35-ovmf-kvm-vfio-nvidia-looking-glass-flat-no-header.txt": "read",
    "134-aarch64-virt-flat-sample-in-python-triple-quoted-string.txt": "read",
    "135-aarch64-virt-vs-microvm-kvm-qp-wrapped-tab-elisions.txt": "read",
    "136-x86-pc-8.2-device-memory-pc-dimm-triple-quoted-qp-wrapped.txt": "read",
    "137-x86-pc-kvm-dispatch-tree-only-f-d-fragment-md.txt": "refused",
    "138-arm-omap-sx1-flat-dispatch-f-d-elided-qp.txt": "read",
    "139-arm-omap-sx1-memory-region-system-quoted-reindented.txt": "read",
}


def read(name: str) -> str:
    with open(CORPUS / name, encoding="utf-8", newline="") as f:
        return f.read()


def reprint(text: str, kind: str) -> str:
    """The lenient reader for ``kind``; a mixed paste is read when either reader takes it."""
    if kind == "flat":
        return print_flat(parse_flat(text, lenient=True))
    if kind == "tree":
        doc = parse_tree_document(text, lenient=True)
        return print_like(build_machine(doc), doc)
    try:
        return reprint(text, "tree")
    except QmirrorError:
        return reprint(text, "flat")


def test_manifest_lists_every_dump_once() -> None:
    files = [e["file"] for e in MANIFEST]
    assert len(files) == len(set(files))
    assert set(files) == {p.name for p in CORPUS.glob("*.txt")}
    assert len(files) >= 40


def test_every_dump_has_an_expectation() -> None:
    assert set(EXPECTED_TODAY) == set(BY_FILE)
    assert set(EXPECTED_TODAY.values()) <= {"read", "refused"}


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"][:3] for e in MANIFEST])
def test_manifest_entry_is_well_formed(entry: dict[str, Any]) -> None:
    assert entry["source_kind"] in SOURCE_KINDS
    assert entry["kind"] in {"tree", "flat", "mixed"}
    assert set(entry["damage"]) <= DAMAGE, set(entry["damage"]) - DAMAGE
    assert len(entry["damage"]) == len(set(entry["damage"]))
    assert isinstance(entry["complete"], bool)
    assert entry["qemu_version"] is None or isinstance(entry["qemu_version"], str)
    assert entry["url"] is None or entry["url"].startswith("https://")


@pytest.mark.parametrize("name", sorted(BY_FILE), ids=[n[:3] for n in sorted(BY_FILE)])
def test_dump_is_as_published(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    data.decode("utf-8")  # every dump is stored as UTF-8
    assert hashlib.sha256(data).hexdigest() == BY_FILE[name]["sha256"]


@pytest.mark.parametrize("name", sorted(BY_FILE), ids=[n[:3] for n in sorted(BY_FILE)])
def test_reader_outcome_today(name: str) -> None:
    text = read(name)
    try:
        out = reprint(text, BY_FILE[name]["kind"])
    except ParseError as err:
        outcome = "refused"
        n_lines = text.count("\n") + 1
        assert 1 <= err.line <= n_lines and err.column >= 1, (err.line, err.column)
    except QmirrorError:
        outcome = "refused"
    else:
        outcome = "read"
        assert out.strip(), "a read dump re-prints something"
    assert outcome == EXPECTED_TODAY[name]


#: A range line of a dump, wherever it sits on a damaged line (8 to 16 hex digits each
#: side: QEMU <= 1.2 printed 8 for 32-bit targets; Markdown may escape the dash).
RANGE = re.compile(r"([0-9a-fA-F]{8,16})\\?-([0-9a-fA-F]{8,16}) \(prio (-?\d+), ([^)]+)\)")


def range_keys(text: str) -> list[tuple[int, int, int, str]]:
    return [
        (int(m[1], 16), int(m[2], 16), int(m[3]), m[4])
        for m in (RANGE.search(ln) for ln in text.splitlines())
        if m
    ]


@pytest.mark.parametrize(
    "name",
    sorted(n for n, e in EXPECTED_TODAY.items() if e == "read"),
    ids=[n[:3] for n in sorted(n for n, e in EXPECTED_TODAY.items() if e == "read")],
)
def test_read_dump_keeps_its_range_lines(name: str) -> None:
    text = read(name)
    texts = each_text(text)
    outs: list[str] = []
    if len(texts) < 2:
        outs.append(reprint(text, BY_FILE[name]["kind"]))
    else:
        for kind, part in texts:
            try:
                outs.append(reprint(part, kind))
            except QmirrorError:
                continue  # another text of the paste may still carry the lines
    have = Counter(range_keys("".join(outs)))
    keys = range_keys(text)
    kept = 0
    for k in keys:
        if have[k]:
            have[k] -= 1
            kept += 1
    assert kept >= 0.9 * len(keys), f"{kept}/{len(keys)} range lines kept"
