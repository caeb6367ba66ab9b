"""The memory-map picture's data, HTML page and SVG (pure parts; the browser is elsewhere).

Expected ranges come from QEMU's own ``info mtree -f`` in the fixtures.
"""

from __future__ import annotations

import colorsys
import itertools
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from qmirror.cli import main
from qmirror.core.units import human_size
from qmirror.live.snapshot import load
from qmirror.verify.reading import Reading, from_snapshot
from qmirror.views import mapsvg, mapview


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64"
QEMU_RANGE = re.compile(
    r"  ([0-9a-f]{16})-([0-9a-f]{16}) \(prio -?\d+, ([a-z/-]+)\): (.*?)"
    r"(?: @([0-9a-f]{16}))?(?: (?:owner|parent):\{.*| orphan)?$"
)


def reading(name: str) -> Reading:
    return from_snapshot(load(FIXTURES / name))


def qemu_ranges(name: str, address_space: str) -> list[tuple[int, int, str]]:
    """(start, last, name) of the FlatView serving ``address_space`` in QEMU's -f text."""
    with open(FIXTURES / name / "info-mtree-f-o.txt", encoding="utf-8", newline="") as f:
        blocks = f.read().replace("\r\n", "\n").split("\n\n")
    for block in blocks:
        lines = block.split("\n")
        if any(ln.startswith(f' AS "{address_space}",') for ln in lines):
            out = []
            for ln in lines:
                m = QEMU_RANGE.match(ln)
                if m:
                    out.append((int(m[1], 16), int(m[2], 16), m[4]))
            return out
    raise AssertionError(f"no AS {address_space} in {name}")


def view_for(data: dict[str, Any], address_space: str) -> dict[str, Any]:
    return next(v for v in data["views"] if address_space in v["address_spaces"])


@pytest.mark.parametrize("name", ["q35", "q35-booted", "pc-dimm", "microvm"])
def test_segments_are_qemus_ranges_and_gaps_in_order(name: str) -> None:
    data = mapview.prepare(reading(name))
    view = view_for(data, "memory")
    ranges = [
        (int(s["start"], 16), int(s["last"], 16), s["name"])
        for s in view["segments"]
        if not s["gap"]
    ]
    assert ranges == qemu_ranges(name, "memory")
    # Segments tile [0, end) without holes or overlaps.
    pos = 0
    for s in view["segments"]:
        assert int(s["start"], 16) == pos
        pos = int(s["last"], 16) + 1
    assert pos == int(view["end"], 16)


def test_log_widths_keep_small_ranges_visible_and_order_sizes() -> None:
    view = view_for(mapview.prepare(reading("q35-booted")), "memory")
    ranges = [s for s in view["segments"] if not s["gap"]]
    biggest = max(ranges, key=lambda s: s["n"])
    smallest = min(ranges, key=lambda s: s["n"])
    # 4 KiB of MMIO and 2 GiB of RAM on one line: the small one is not lost ...
    assert smallest["w"] / sum(s["w"] for s in view["segments"]) > 0.005
    # ... and a bigger range is always wider.
    assert biggest["w"] > smallest["w"]
    assert math.isclose(mapview.weight(4096), 13.0)
    by_size = sorted(ranges, key=lambda s: s["n"])
    assert [s["w"] for s in by_size] == sorted(s["w"] for s in by_size)


def test_hover_data_names_path_offset_and_owner() -> None:
    view = view_for(mapview.prepare(reading("q35")), "memory")
    seg = next(
        s
        for s in view["segments"]
        if not s["gap"] and s["name"] == "pc.ram" and int(s["start"], 16) == 0
    )
    assert seg["kind"] == "ram" and seg["offset"] == "0x0000000000000000"
    assert seg["path"] == "system › alias ram-below-4g @pc.ram (prio 0) › pc.ram"
    assert seg["owner"] == "owner:{obj path=/objects/pc.ram}"
    # The segment points at its region in the tree beside the map, and at the alias.
    nodes = {}
    stack = list(view["tree"])
    while stack:
        n = stack.pop()
        nodes[n["id"]] = n
        stack.extend(n["children"])
    assert nodes[seg["node"]]["name"] == "pc.ram"
    assert [nodes[i]["name"] for i in seg["via"]] == ["system", "ram-below-4g", "pc.ram"]


def test_changes_between_two_readings() -> None:
    # pc (paused before firmware) and pc-booted share the machine, not every device,
    # so most of what changed is visible; QEMU's -f says what each reading maps.
    old, new = reading("pc"), reading("pc-booted")
    data = mapview.prepare(new, old)
    view = view_for(data, "memory")
    old_ranges = set(qemu_ranges("pc", "memory"))
    new_ranges = set(qemu_ranges("pc-booted", "memory"))
    marked = {
        (int(s["start"], 16), int(s["last"], 16), s["name"])
        for s in view["segments"]
        if not s["gap"] and s["change"]
    }
    removed = {(int(r["start"], 16), int(r["last"], 16), r["name"]) for r in view["removed"]}
    # Same start, last and name may still differ in offset or flags; never the reverse.
    assert new_ranges - old_ranges <= marked
    assert old_ranges - new_ranges <= removed
    assert data["old_title"].startswith("pc (")


def test_html_is_self_contained(tmp_path: Path) -> None:
    out = tmp_path / "map.html"
    code = main(["map", str(FIXTURES / "q35"), "--html", str(out)])
    assert code == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # Nothing to fetch at view time: no external scripts, styles, fonts or images.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page
    data = re.search(
        r'<script id="qmirror-data" type="application/json">(.*?)</script>', page, re.S
    )
    assert data is not None
    doc = json.loads(data.group(1))
    assert doc["schema"] == "qmirror.map/1"
    assert {"memory", "I/O"} <= {a for v in doc["views"] for a in v["address_spaces"]}


def test_names_cannot_break_out_of_the_script() -> None:
    text = mapview.to_json({"name": "</script><script>alert(1)</script><!--"})
    assert "</script" not in text and "<!--" not in text
    assert json.loads(text)["name"] == "</script><script>alert(1)</script><!--"


def test_svg_is_well_formed_with_a_title_per_range(tmp_path: Path) -> None:
    out = tmp_path / "map.svg"
    assert main(["map", str(FIXTURES / "pc-dimm"), "--svg", str(out), "--as", "memory"]) == 0
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    for start, last, name in qemu_ranges("pc-dimm", "memory"):
        assert any(t.startswith(name) and f"0x{start:016x} – 0x{last:016x}" in t for t in titles), (
            name
        )
    assert "cpu-smm-0" not in out.read_text()  # --as memory: only memory's FlatView


def test_svg_of_a_diff_marks_changes() -> None:
    svg = mapsvg.to_svg(mapview.prepare(reading("pc-booted"), reading("pc")))
    assert 'stroke="#1f9d55"' in svg or 'stroke="#e8890c"' in svg  # added or changed
    assert 'fill="url(#removed)"' in svg


def test_map_needs_an_output_and_at_most_two_targets(capsys: pytest.CaptureFixture[str]) -> None:
    q35 = str(FIXTURES / "q35")
    assert main(["map", q35]) == 2
    assert "--html" in capsys.readouterr().err
    assert main(["map", q35, q35, q35, "--svg", "/dev/null"]) == 2
    assert "expected 1 to 2 TARGETs" in capsys.readouterr().err


# -- issue 17: labels, axis, colours ------------------------------------------------------


def _svg_texts(svg: str, cls: str) -> list[tuple[float, str]]:
    root = ET.fromstring(svg)
    return [
        (float(t.get("x", "0")), t.text or "")
        for t in root.iter("{http://www.w3.org/2000/svg}text")
        if t.get("class") == cls
    ]


def test_svg_labels_the_large_ranges_of_aarch64_virt() -> None:
    """Before, no range of arm virt got a label: none is wide enough for its name."""
    virt = from_snapshot(load(FIXTURES.parent / "aarch64" / "virt"))
    svg = mapsvg.to_svg(mapview.prepare(virt))
    labels = [t for cls in ("co", "l", "l dark") for _, t in _svg_texts(svg, cls)]
    memory = sorted(
        qemu_ranges_of(FIXTURES.parent / "aarch64" / "virt", "memory"), key=lambda r: r[0] - r[1]
    )
    # The five largest ranges QEMU reports, each named (with its size where it fits).
    for start, last, name in memory[:5]:
        size = human_size(last - start + 1)
        assert {name, f"{name} {size}", f"{name}  {size}"} & set(labels), (name, labels)


def qemu_ranges_of(capture: Path, address_space: str) -> list[tuple[int, int, str]]:
    text = (capture / "info-mtree-f-o.txt").read_text(encoding="utf-8")
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if f' AS "{address_space}",' in block:
            return [
                (int(m[1], 16), int(m[2], 16), m[4])
                for m in map(QEMU_RANGE.match, block.split("\n"))
                if m
            ]
    raise AssertionError(address_space)


def test_callouts_never_overlap_and_leaders_cross_no_text() -> None:
    items = [
        (float(x), float(x) + 3, (f"region-{x} 4 KiB", f"region-{x}"), float(1000 - x))
        for x in range(0, 600, 7)
    ]
    placed = mapsvg.place_callouts(items, left=0, right=600)
    assert len(placed) > 5
    spans = [(row, a, a + len(text) * mapsvg.CHAR_W, lead) for row, a, lead, text in placed]
    for row, a, b, _ in spans:
        assert a >= 0 and b <= 600
        assert not any(r == row and (a, b) != (c, d) and a < d and c < b for r, c, d, _ in spans)
    for row, _, _, lead in spans:
        assert not any(r < row and c < lead < d for r, c, d, _ in spans)


def test_address_labels_keep_their_distance() -> None:
    ticks = [(float(x), f"0x{x:x}000", float(x % 5)) for x in range(0, 1000, 9)]
    placed = mapsvg.place_ticks(ticks, right=1000)
    assert 10 < len(placed) < len(ticks)
    edges = sorted(
        (x if not end else 1000 - len(t) * mapsvg.TICK_CHAR_W, len(t) * mapsvg.TICK_CHAR_W)
        for x, t, end in placed
    )
    assert all(b[0] - (a[0] + a[1]) >= mapsvg.TICK_GAP for a, b in itertools.pairwise(edges))


def _rgb(colour: str) -> tuple[float, float, float]:
    n = int(colour[1:], 16)
    return (n >> 16) / 255, ((n >> 8) & 255) / 255, (n & 255) / 255


def test_kind_colours_are_told_apart() -> None:
    """ROM device and IOMMU were two purples; every pair of kinds now differs in hue or
    lightness clearly (the map's legend is the only key)."""
    colours = {k: c for k, c in mapview.KIND_COLOURS.items() if k != "gap"}
    for (k1, c1), (k2, c2) in itertools.combinations(colours.items(), 2):
        h1, l1, _ = colorsys.rgb_to_hls(*_rgb(c1))
        h2, l2, _ = colorsys.rgb_to_hls(*_rgb(c2))
        hue = min(abs(h1 - h2), 1 - abs(h1 - h2)) * 360
        assert hue >= 30 or abs(l1 - l2) >= 0.15, (k1, k2, hue)
