"""The memory-map picture as a static SVG, for reports and documents. Pure.

Draws the data of :func:`qmirror.views.mapview.prepare` with the same log-scaled layout as
the HTML page: one bar per FlatView, ranges coloured by kind, names where they fit,
addresses at range boundaries, removed ranges hatched under the bar. Every range
carries a ``<title>``, which SVG viewers show on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape


WIDTH = 1200
MARGIN = 20
BAR_H = 40
LANE_H = 9
CHAR_W = 6.4  # average width of an 11px sans-serif character
TICK_CHAR_W = 6.1
#: Rows of call-out labels above the bar, for ranges too narrow for their name.
CALLOUT_ROWS = 3
CALLOUT_H = 15
#: Least room between two address labels under the bar.
TICK_GAP = 16
CHANGE_COLOURS = {"added": "#1f9d55", "changed": "#e8890c", "removed": "#c0392b"}
KIND_NAMES = {
    "ram": "RAM",
    "rom": "ROM / read-only RAM",
    "romd": "ROM device (ROMD)",
    "ramd": "RAM device",
    "i/o": "MMIO / port I/O",
    "iommu": "IOMMU",
    "gap": "nothing mapped",
}


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


def place_callouts(
    items: Sequence[tuple[float, float, Sequence[str], float]],
    *,
    left: float,
    right: float,
    rows: int = CALLOUT_ROWS,
    char_w: float = CHAR_W,
) -> list[tuple[int, float, float, str]]:
    """Where the call-out labels go: the largest ranges first, each text starting at its
    range's left edge (a leader line drops from there to the bar), in the row farthest
    from the bar where neither its text nor its leader crosses anything placed before.
    Trying the far rows first leaves the near ones for the neighbours to its right.

    :param items: ``(x0, x1, texts, size)`` of each range to label; *texts* are the
        label's spellings, best first (name and size, then the name alone).
    :return: ``(row, text x, leader x, text)`` of each placed label (row 0 is nearest the
        bar); a range that finds no room for any spelling gets none.
    """
    texts: list[list[tuple[float, float]]] = [[] for _ in range(rows)]
    leaders: list[list[float]] = [[] for _ in range(rows)]
    out = []
    for x0, x1, spellings, _ in sorted(items, key=lambda it: (-it[3], it[0])):
        lead = x0 + min(2.0, (x1 - x0) / 2)
        spot = None
        for text in spellings:
            tw = len(text) * char_w
            # The text starts at the leader or, failing that, ends there.
            starts = [
                max(min(lead - 1, right - tw), left),
                max(min(lead + 1 - tw, right - tw), left),
            ]
            spot = next(
                (
                    (row, a, text, tw)
                    for row in reversed(range(rows))
                    for a in starts
                    if _callout_fits(texts, leaders, row, a, a + tw, lead)
                ),
                None,
            )
            if spot is not None:
                break
        if spot is None:
            continue
        row, a, text, tw = spot
        texts[row].append((a, a + tw))
        for k in range(row):
            leaders[k].append(lead)
        out.append((row, a, lead, text))
    return out


def _callout_fits(
    texts: list[list[tuple[float, float]]],
    leaders: list[list[float]],
    row: int,
    a: float,
    b: float,
    lead: float,
) -> bool:
    """Text [a, b] in *row* crosses no text or leader there, and its leader at *lead*
    crosses no text in the rows below."""
    if any(b + 6 > c and a < d + 6 for c, d in texts[row]):
        return False
    if any(a - 3 < p < b + 3 for p in leaders[row]):
        return False
    return not any(c - 3 < lead < d + 3 for k in range(row) for c, d in texts[k])


def place_ticks(
    ticks: list[tuple[float, str, float]],
    *,
    right: float,
    char_w: float = TICK_CHAR_W,
    gap: float = TICK_GAP,
) -> list[tuple[float, str, bool]]:
    """Which address labels to write: those at the edges of the largest ranges first,
    each only with ``gap`` pixels of room to its neighbours.

    :param ticks: ``(x, text, weight)`` of each boundary.
    :return: ``(x, text, anchored at its end)``, left to right.
    """
    placed: list[tuple[float, float, float, str, bool]] = []
    for x, text, _ in sorted(ticks, key=lambda t: -t[2]):
        w = len(text) * char_w
        left = min(x, right - w)
        if any(left < b + gap and left + w + gap > a for a, b, _, _, _ in placed):
            continue
        placed.append((left, left + w, x, text, left < x))
    return [(x, text, end) for _, _, x, text, end in sorted(placed)]


def _luminance(colour: str) -> float:
    n = int(colour[1:], 16)
    return (0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255)) / 255


def _range_title(view: dict[str, Any], seg: dict[str, Any], change: str | None) -> str:
    if seg.get("gap"):
        return f"nothing mapped\n{seg['start']} – {seg['last']} ({seg['human']})"
    lines = [
        f"{seg['name']} ({KIND_NAMES.get(seg['kind'], seg['kind'])})",
        f"{seg['start']} – {seg['last']} ({seg['human']})",
        f"offset in region {_short(seg['offset'])}",
    ]
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
    out.append(
        f'<text x="{MARGIN}" y="{y + 14}" class="h">{escape(names)}'
        f'<tspan class="sub" dx="8">{escape(sub)}</tspan></text>'
    )
    y += 22
    segs = view["segments"]
    if not segs:
        out.append(
            f'<text x="{MARGIN}" y="{y + 14}" class="sub">No rendered FlatView: '
            "nothing is mapped.</text>"
        )
        return y + 30
    cum = _positions(view)
    total = cum[-1] or 1.0

    def x(pos: float) -> float:
        return MARGIN + pos / total * inner

    bar_y = y + CALLOUT_ROWS * CALLOUT_H + 4
    ticks: list[tuple[float, str, float]] = []
    callouts: list[tuple[float, float, tuple[str, ...], float]] = []
    for i, seg in enumerate(segs):
        x0, x1 = x(cum[i]), x(cum[i + 1])
        w = max(x1 - x0, 0.8)
        title = _range_title(view, seg, seg.get("change"))
        if seg.get("gap"):
            out.append(
                f'<rect x="{x0:.2f}" y="{bar_y}" width="{w:.2f}" height="{BAR_H}" '
                f'fill="url(#gap)"><title>{escape(title)}</title></rect>'
            )
        else:
            colour = kinds.get(seg["kind"], "#888888")
            stroke = CHANGE_COLOURS.get(seg.get("change") or "", "#ffffff")
            sw = 3 if seg.get("change") else 0.6
            out.append(
                f'<rect x="{x0:.2f}" y="{bar_y}" width="{w:.2f}" height="{BAR_H}" '
                f'fill="{colour}" stroke="{stroke}" stroke-width="{sw}">'
                f"<title>{escape(title)}</title></rect>"
            )
            text = f"{seg['name']}  {seg['human']}"
            room = x1 - x0 - 8
            label = (
                text
                if room > len(text) * CHAR_W
                else (seg["name"] if room > len(seg["name"]) * CHAR_W else None)
            )
            if label:
                cls = "l dark" if _luminance(colour) > 0.62 else "l"
                out.append(
                    f'<text x="{x0 + 4:.2f}" y="{bar_y + BAR_H / 2 + 4}" '
                    f'class="{cls}">{escape(label)}</text>'
                )
            else:
                callouts.append((x0, x1, (f"{seg['name']} {seg['human']}", seg["name"]), seg["n"]))
        ticks.append((x0, seg["start"], seg["n"]))
    ticks.append((x(total), view["end"], float("inf")))
    for row, tx, cx, text in place_callouts(callouts, left=MARGIN, right=WIDTH - MARGIN):
        base = bar_y - 4 - row * CALLOUT_H
        out.append(f'<line x1="{cx:.2f}" x2="{cx:.2f}" y1="{base + 2}" y2="{bar_y}" class="lead"/>')
        out.append(f'<text x="{tx:.2f}" y="{base}" class="co">{escape(text)}</text>')
    y = bar_y + BAR_H + 3
    if view["removed"]:
        for r in view["removed"]:
            x0 = x(_addr_pos(view, cum, r["s"]))
            x1 = x(_addr_pos(view, cum, r["s"] + r["n"]))
            title = _range_title(view, {**r, "gap": False}, "removed")
            out.append(
                f'<rect x="{x0:.2f}" y="{y}" width="{max(x1 - x0, 1.5):.2f}" '
                f'height="{LANE_H}" fill="url(#removed)" stroke="#c0392b" '
                f'stroke-width="1"><title>{escape(title)}</title></rect>'
            )
        y += LANE_H + 4
    for tx, _, _ in ticks:
        out.append(f'<line x1="{tx:.2f}" x2="{tx:.2f}" y1="{y - 4}" y2="{y + 2}" class="t"/>')
    for tx, hex_text, end in place_ticks(
        [(tx, _short(h), w) for tx, h, w in ticks], right=WIDTH - MARGIN
    ):
        anchor = ' text-anchor="end"' if end else ""
        out.append(
            f'<text x="{(WIDTH - MARGIN) if end else tx:.2f}" y="{y + 13}" '
            f'class="tick"{anchor}>{escape(hex_text)}</text>'
        )
    return y + 30


def to_svg(data: dict[str, Any]) -> str:
    """The picture as one SVG document (fonts are generic families: nothing to fetch)."""
    kinds: dict[str, str] = data["kinds"]
    body: list[str] = []
    y = 20.0
    title = data["title"] + (
        f"  (changes since {data['old_title']})" if data.get("old_title") else ""
    )
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
        body.append(
            f'<rect x="{lx:.1f}" y="{y - 10}" width="14" height="12" rx="2" fill="{fill}"{stroke}/>'
        )
        body.append(f'<text x="{lx + 19:.1f}" y="{y}" class="sub">{escape(name)}</text>')
        lx += 19 + len(name) * 6.6 + 16
    y += 14
    for view in data["views"]:
        y = _view(body, view, kinds, y + 10)
    height = int(y + 10)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{_attr(title)}">'
    )
    style = (
        "<style>text{font-family:system-ui,'DejaVu Sans',sans-serif;font-size:11px;"
        "fill:#1d2430}.title{font-size:16px;font-weight:700}.h{font-size:13px;"
        "font-weight:700;fill:#0b5cab}.sub{fill:#5f6b7a;font-weight:400;font-size:11.5px}"
        ".l{fill:#fff;font-weight:600;pointer-events:none}.l.dark{fill:#1d2430}"
        ".tick{font-family:'DejaVu Sans Mono',monospace;font-size:10px;fill:#5f6b7a}"
        ".t{stroke:#aab4c0}.lead{stroke:#8a96a6;stroke-width:0.8}"
        ".co{font-size:10.5px;fill:#1d2430}</style>"
    )
    defs = (
        '<defs><pattern id="gap" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f1f3f5"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#dde2e8" stroke-width="2"/></pattern>'
        '<pattern id="removed" width="5" height="5" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(-45)"><rect width="5" height="5" fill="#fbe3e0"/>'
        '<line x1="0" y1="0" x2="0" y2="5" stroke="#c0392b" stroke-width="2"/></pattern>'
        "</defs>"
    )
    background = f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>'
    return "\n".join([head, style, defs, background, *body, "</svg>"]) + "\n"
