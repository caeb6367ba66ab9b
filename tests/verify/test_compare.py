"""Comparison of FlatViews: ranges paired by start address, whatever their order."""

from __future__ import annotations

import re
from pathlib import Path

from qmirror.verify.check import check


PC = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64" / "pc"
_RANGE = re.compile(r"  [0-9a-f]{16}-")


def _texts() -> tuple[str, list[str]]:
    tree = (PC / "info-mtree.txt").read_text(encoding="utf-8")
    flat = (PC / "info-mtree-f.txt").read_text(encoding="utf-8").split("\n")
    return tree, flat


def _blocks_of_ranges(lines: list[str]) -> list[list[int]]:
    """Indexes of range lines, one list per FlatView block."""
    blocks: list[list[int]] = []
    current: list[int] = []
    for i, ln in enumerate(lines):
        if _RANGE.match(ln):
            current.append(i)
        elif current:
            blocks.append(current)
            current = []
    return blocks


def test_the_captured_pair_matches() -> None:
    tree, flat = _texts()
    assert check(tree, "\n".join(flat), strict=True).ok


def test_ranges_out_of_order_are_still_paired_by_start() -> None:
    tree, flat = _texts()
    for idx in _blocks_of_ranges(flat):
        flat[idx[0] : idx[-1] + 1] = reversed(flat[idx[0] : idx[-1] + 1])
    assert check(tree, "\n".join(flat), strict=True).ok


def test_a_range_qemu_lacks_is_ours_alone_and_nothing_else() -> None:
    tree, flat = _texts()
    block = max(_blocks_of_ranges(flat), key=len)
    gone = flat.pop(block[len(block) // 2])
    views = check(tree, "\n".join(flat), strict=True).comparison.views
    diffs = [d for v in views for d in v.diffs]
    assert [(d.kind, d.start) for d in diffs] == [("extra", int(gone[2:18], 16))]


def test_a_renamed_range_differs_in_its_name_only() -> None:
    tree, flat = _texts()
    block = max(_blocks_of_ranges(flat), key=len)
    i = block[-1]
    flat[i] = flat[i].replace("): ", "): renamed-", 1)
    diffs = [d for v in check(tree, "\n".join(flat), strict=True).comparison.views for d in v.diffs]
    assert [(d.kind, d.start, d.fields) for d in diffs] == [
        ("changed", int(flat[i][2:18], 16), ["name"])
    ]
