"""The memory-map picture as a static SVG, for reports and documents. Pure.

Draws the data of :func:`qmirror.views.mapview.prepare` with the same log-scaled layout as
the HTML page: one bar per FlatView, ranges coloured by kind, names where they fit,
addresses at range boundaries, removed ranges hatched under the bar. Every range
carries a ``<title>``, which SVG viewers show on hover.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape


WIDTH = 1200
MARGIN = 20
BAR_H = 34
LANE_H = 9
CHAR_W = 6.4  # average width of an 11px sans-serif character
TICK_CHAR_W = 6.1
CHANGE_COLOURS = {"added": "#1f9d55", "changed": "#e8890c", "removed": "#c0392b"}
KIND_NAMES = {"ram": "RAM", "rom": "ROM / read-only RAM", "romd": "ROM device (ROMD)",
              "ramd": "RAM device", "i/o": "MMIO / port I/O", "iommu": "IOMMU",
              "gap": "nothing mapped"}


def _short(hex_text: str) -> str:
    digits = hex_text[2:].lstrip("0")
    return "0x" + (digits or "0")


def _attr(value: object) -> str:
    return escape(str(value), {'"': "&quot;"})


def _positions(view: dict[str, Any]) -> list[float]:
    cum = [0.0]
    for seg in view["segments"]:
        cum.append(cum[-1] + seg["w"])
    return cum


def _addr_pos(view: dict[str, Any], cum: list[float], addr: float) -> float:
    segs = view["segments"]
    for i, seg in enumerate(segs):
        if seg["s"] <= addr < seg["s"] + seg["n"]:
            frac = (addr - seg["s"]) / seg["n"] if seg["n"] else 0.0
            return cum[i] + frac * (cum[i + 1] - cum[i])
    return cum[-1]


def _luminance(colour: str) -> float:
    n = int(colour[1:], 16)
    return (0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255)) / 255


def _range_title(view: dict[str, Any], seg: dict[str, Any], change: str | None) -> str:
    if seg.get("gap"):
        return f"nothing mapped\n{seg['start']} – {seg['last']} ({seg['human']})"
    lines = [f"{seg['name']} ({KIND_NAMES.get(seg['kind'], seg['kind'])})",
             f"{seg['start']} – {seg['last']} ({seg['human']})",
             f"offset in region {_short(seg['offset'])}"]
    if seg.get("owner"):
        lines.append(f"owner {seg['owner']}")
    lines.append(f"path {seg['path']}")
    lines.append("address spaces " + ", ".join(view["address_spaces"]))
    if change:
        lines.append(f"{change} since the older reading")
    return "\n".join(lines)


def _view(out: list[str], view: dict[str, Any], kinds: dict[str, str], y: float) -> float:
    """Draw one view at ``y``; return the y below it."""
    inner = WIDTH - 2 * MARGIN
    names = ", ".join(view["address_spaces"])
    sub = f"root {view['root'] or '(none)'} · {view['ranges']} ranges"
    if view["status"] != "same":
        sub += f" · address space {'new' if view['status'] == 'added' else 'gone'}"
    out.append(f'<text x="{MARGIN}" y="{y + 14}" class="h">{escape(names)}'
               f'<tspan class="sub" dx="8">{escape(sub)}</tspan></text>')
    y += 22
    segs = view["segments"]
    if not segs:
        out.append(f'<text x="{MARGIN}" y="{y + 14}" class="sub">No rendered FlatView: '
                   "nothing is mapped.</text>")
        return y + 30
    cum = _positions(view)
    total = cum[-1] or 1.0

    def x(pos: float) -> float:
        return MARGIN + pos / total * inner

    ticks: list[tuple[float, str]] = []
    for i, seg in enumerate(segs):
        x0, x1 = x(cum[i]), x(cum[i + 1])
        w = max(x1 - x0, 0.8)
        title = _range_title(view, seg, seg.get("change"))
        if seg.get("gap"):
            out.append(f'<rect x="{x0:.2f}" y="{y}" width="{w:.2f}" height="{BAR_H}" '
                       f'fill="url(#gap)"><title>{escape(title)}</title></rect>')
        else:
            colour = kinds.get(seg["kind"], "#888888")
            stroke = CHANGE_COLOURS.get(seg.get("change") or "", "#ffffff")
            sw = 3 if seg.get("change") else 0.6
            out.append(f'<rect x="{x0:.2f}" y="{y}" width="{w:.2f}" height="{BAR_H}" '
                       f'fill="{colour}" stroke="{stroke}" stroke-width="{sw}">'
                       f"<title>{escape(title)}</title></rect>")
            text = f"{seg['name']}  {seg['human']}"
            room = x1 - x0 - 8
            label = text if room > len(text) * CHAR_W else (
                seg["name"] if room > len(seg["name"]) * CHAR_W else None)
            if label:
                cls = "l dark" if _luminance(colour) > 0.62 else "l"
                out.append(f'<text x="{x0 + 4:.2f}" y="{y + BAR_H / 2 + 4}" class="{cls}">'
                           f"{escape(label)}</text>")
        ticks.append((x0, seg["start"]))
    ticks.append((x(total), view["end"]))
    y += BAR_H + 3
    if view["removed"]:
        for r in view["removed"]:
            x0 = x(_addr_pos(view, cum, r["s"]))
            x1 = x(_addr_pos(view, cum, r["s"] + r["n"]))
            title = _range_title(view, {**r, "gap": False}, "removed")
            out.append(f'<rect x="{x0:.2f}" y="{y}" width="{max(x1 - x0, 1.5):.2f}" '
                       f'height="{LANE_H}" fill="url(#removed)" stroke="#c0392b" '
                       f'stroke-width="1"><title>{escape(title)}</title></rect>')
        y += LANE_H + 4
    right = -1e9  # right edge of the last address written
    for tx, hex_text in ticks:
        label = _short(hex_text)
        wlab = len(label) * TICK_CHAR_W
        out.append(f'<line x1="{tx:.2f}" x2="{tx:.2f}" y1="{y - 4}" y2="{y + 2}" class="t"/>')
        left = min(tx, WIDTH - MARGIN - wlab)
        if left < right + 6:
            continue
        end = left < tx
        anchor = ' text-anchor="end"' if end else ""
        out.append(f'<text x="{(WIDTH - MARGIN) if end else tx:.2f}" y="{y + 13}" '
                   f'class="tick"{anchor}>{escape(label)}</text>')
        right = left + wlab
    return y + 30


def to_svg(data: dict[str, Any]) -> str:
    """The picture as one SVG document (fonts are generic families: nothing to fetch)."""
    kinds: dict[str, str] = data["kinds"]
    body: list[str] = []
    y = 20.0
    title = data["title"] + (f"  (changes since {data['old_title']})" if data.get("old_title")
                             else "")
    body.append(f'<text x="{MARGIN}" y="{y}" class="title">{escape(title)}</text>')
    y += 8
    for line in data.get("details", []):
        y += 15
        shown = line if len(line) <= 190 else line[:189] + "…"
        body.append(f'<text x="{MARGIN}" y="{y}" class="sub">{escape(shown)}</text>')
    y += 22
    lx = float(MARGIN)
    legend = [(KIND_NAMES.get(k, k), c, False) for k, c in kinds.items()]
    if data.get("old_title"):
        legend += [(name, c, True) for name, c in CHANGE_COLOURS.items()]
    for name, colour, outline in legend:
        fill = "none" if outline else ("url(#gap)" if colour == kinds.get("gap") else colour)
        stroke = f' stroke="{colour}" stroke-width="3"' if outline else ""
        body.append(f'<rect x="{lx:.1f}" y="{y - 10}" width="14" height="12" rx="2" '
                    f'fill="{fill}"{stroke}/>')
        body.append(f'<text x="{lx + 19:.1f}" y="{y}" class="sub">{escape(name)}</text>')
        lx += 19 + len(name) * 6.6 + 16
    y += 14
    for view in data["views"]:
        y = _view(body, view, kinds, y + 10)
    height = int(y + 10)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{_attr(title)}">')
    style = (
        "<style>text{font-family:system-ui,'DejaVu Sans',sans-serif;font-size:11px;"
        "fill:#1d2430}.title{font-size:16px;font-weight:700}.h{font-size:13px;"
        "font-weight:700;fill:#0b5cab}.sub{fill:#5f6b7a;font-weight:400;font-size:11.5px}"
        ".l{fill:#fff;font-weight:600;pointer-events:none}.l.dark{fill:#1d2430}"
        ".tick{font-family:'DejaVu Sans Mono',monospace;font-size:10px;fill:#5f6b7a}"
        ".t{stroke:#aab4c0}</style>")
    defs = ('<defs><pattern id="gap" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f1f3f5"/>'
            '<line x1="0" y1="0" x2="0" y2="6" stroke="#dde2e8" stroke-width="2"/></pattern>'
            '<pattern id="removed" width="5" height="5" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(-45)"><rect width="5" height="5" fill="#fbe3e0"/>'
            '<line x1="0" y1="0" x2="0" y2="5" stroke="#c0392b" stroke-width="2"/></pattern>'
            "</defs>")
    background = f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>'
    return "\n".join([head, style, defs, background, *body, "</svg>"]) + "\n"
