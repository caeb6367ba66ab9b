"""The memory-map picture's data: FlatViews laid out on a log-scaled line. Pure.

:func:`prepare` turns a :class:`~qmirror.verify.reading.Reading` (and optionally an older
one of the same VM) into a JSON-able dict that both pictures draw from: the HTML page
(:func:`to_html`, template ``qmirror/views/templates/map.html``) and the static SVG
(:mod:`qmirror.views.mapsvg`).

Layout. Each FlatView is drawn on one line from address 0 to the end of its last
range. Ranges and the gaps between them are *segments*; a segment of ``n`` bytes gets
the width ``log2(n) + 1`` (a gap half of that), so a 4 KiB MMIO window and 64 GiB of
RAM are both visible and a larger range is always wider than a smaller one. Exact
addresses and sizes are in the data (as ``"0x%016x"`` strings) for hovering; the
HTML page can switch to a linear scale.

Changes. With an older reading, address spaces are matched by name, root and
creation order (:func:`qmirror.sim.topology.address_space_keys`) and each range is
compared with QEMU's ``flatrange_equal`` across readings
(:func:`qmirror.sim.topology.same_by_value`): new ranges are ``added`` (nothing was there)
or ``changed``; old ones no longer present are listed as ``removed``, placed on the
same line (gaps are split at their edges so they stay visible).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Collection
from importlib import resources
from typing import Any

from qmirror import __version__
from qmirror.core.model import MASK64, AddressSpace, MemoryRegion, kind_word
from qmirror.core.render import FlatRange, FlatView, range_kind
from qmirror.core.units import hexs, human_size
from qmirror.sim.listener import TopologyEvent
from qmirror.sim.topology import Transition, transitions
from qmirror.text.grammar import format_owners
from qmirror.verify.compare import describe_path
from qmirror.verify.reading import Reading


SCHEMA = "qmirror.map/1"
#: A gap is drawn at this fraction of the width of a range of the same size.
GAP_WEIGHT = 0.5
#: Kinds a range can have on the map, in legend order, with their colours (shared
#: with the SVG; colour-blind-safe families).
KIND_COLOURS = {
    "ram": "#3a9d5d",
    "rom": "#d6a21e",
    "romd": "#b65fc4",
    "ramd": "#66c2a5",
    "i/o": "#d9534f",
    "iommu": "#3474c4",
    "gap": "#e9ecef",
}


def weight(size: int, *, gap: bool = False) -> float:
    """Width of a segment of ``size`` bytes in log layout units."""
    w = math.log2(max(size, 1)) + 1.0
    return w * GAP_WEIGHT if gap else w


def owner_text(mr: MemoryRegion) -> str | None:
    """``owner:{dev id=nic0}`` as ``-o`` prints it, or ``None`` when unknown."""
    return None if mr.ownership is None else format_owners(mr.ownership).strip()


class _Tree:
    """The region tree beside one view: the root's subtree, alias targets expanded
    once where first reached, each region one node (so a range can point at it)."""

    def __init__(self, root: MemoryRegion | None) -> None:
        self.ids: dict[MemoryRegion, str] = {}
        self.inside: set[MemoryRegion] = set()
        if root is not None:
            self.inside = set(root.walk())
        self.nodes = [] if root is None else [self._node(root, 0)]

    def _node(self, root: MemoryRegion, base: int) -> dict[str, Any]:
        # Iterative over (region, absolute base, where the node goes).
        top: dict[str, Any] = {}
        stack: list[tuple[MemoryRegion, int, dict[str, Any]]] = [(root, base, top)]
        while stack:
            mr, base, slot = stack.pop()
            nid = f"n{len(self.ids)}"
            self.ids[mr] = nid
            start = (base + mr.addr) & MASK64
            slot.update(
                {
                    "id": nid,
                    "name": mr.label,
                    "kind": kind_word(mr),
                    "start": hexs(start),
                    "size": human_size(mr.size),
                    "priority": mr.priority,
                    "enabled": mr.enabled,
                    "owner": owner_text(mr),
                    "children": [],
                }
            )
            kids: list[tuple[MemoryRegion, int]] = []
            if mr.alias is not None:
                target = mr.alias
                slot["alias"] = f"{target.label} @{mr.alias_offset & MASK64:#x}"
                if target not in self.ids and target not in self.inside:
                    # The target's offset 0 sits at start - alias_offset.
                    kids.append((target, start - mr.alias_offset - target.addr))
                else:
                    slot["alias_ref"] = True
            sub = sorted(mr.subregions, key=lambda c: (c.addr & MASK64, -c.priority))
            kids.extend((c, start) for c in sub)
            children: list[dict[str, Any]] = [{} for _ in kids]
            slot["children"] = children
            for (kid, kid_base), child in reversed(list(zip(kids, children, strict=True))):
                stack.append((kid, kid_base, child))
        return top

    def node_of(self, mr: MemoryRegion) -> str | None:
        return self.ids.get(mr)


def _segment(r: FlatRange, tree: _Tree, change: str | None) -> dict[str, Any]:
    mr = r.mr
    visit = r.via
    via = [] if visit is None else [tree.node_of(m) for m in visit.path()]
    return {
        "gap": False,
        "start": hexs(r.start),
        "last": hexs(r.end - 1),
        "size": hexs(r.size),
        "n": float(r.size),
        "s": float(r.start),
        "human": human_size(r.size),
        "w": weight(r.size),
        "kind": range_kind(r),
        "name": mr.label,
        "offset": hexs(r.offset_in_region),
        "readonly": r.readonly,
        "nonvolatile": r.nonvolatile,
        "priority": mr.priority,
        "owner": owner_text(mr),
        "path": describe_path(visit),
        "node": tree.node_of(mr),
        "via": [n for n in via if n is not None],
        "change": change,
    }


def _gap(start: int, end: int) -> dict[str, Any]:
    return {
        "gap": True,
        "start": hexs(start),
        "last": hexs(end - 1),
        "size": hexs(end - start),
        "n": float(end - start),
        "s": float(start),
        "human": human_size(end - start),
        "w": weight(end - start, gap=True),
        "kind": "gap",
        "change": None,
    }


def _changes(events: list[TopologyEvent]) -> tuple[dict[FlatRange, str], list[FlatRange]]:
    """Which new ranges are added or changed (by identity), and the removed old ones."""
    removed = [ev.old for ev in events if ev.kind == "del" and ev.old is not None]
    added = [ev.new for ev in events if ev.kind == "add" and ev.new is not None]
    marks: dict[FlatRange, str] = {}
    for r in added:
        overlaps = any(o.start < r.end and r.start < o.end for o in removed)
        marks[r] = "changed" if overlaps else "added"
    return marks, removed


def _lay_out(
    ranges: list[FlatRange], removed: list[FlatRange], tree: _Tree, marks: dict[FlatRange, str]
) -> list[dict[str, Any]]:
    """Segments in address order: the ranges, and gaps split at removed ranges' edges."""
    cuts = sorted({b for o in removed for b in (o.start, o.end)})
    segments: list[dict[str, Any]] = []
    pos = 0
    for r in ranges:
        if r.start > pos:
            edges = [pos, *[c for c in cuts if pos < c < r.start], r.start]
            segments.extend(_gap(a, b) for a, b in itertools.pairwise(edges))
        segments.append(_segment(r, tree, marks.get(r)))
        pos = r.end
    tail = [c for c in cuts if c > pos]
    if tail:
        edges = [pos, *tail]
        segments.extend(_gap(a, b) for a, b in itertools.pairwise(edges))
    return segments


def _removed_json(removed: list[FlatRange]) -> list[dict[str, Any]]:
    return [
        {
            "start": hexs(o.start),
            "last": hexs(o.end - 1),
            "size": hexs(o.size),
            "s": float(o.start),
            "n": float(o.size),
            "human": human_size(o.size),
            "name": o.mr.label,
            "kind": range_kind(o),
            "offset": hexs(o.offset_in_region),
            "owner": owner_text(o.mr),
            "path": describe_path(o.via),
        }
        for o in removed
    ]


def _view_json(
    index: int, view: FlatView, ases: list[AddressSpace], transition: Transition | None, status: str
) -> dict[str, Any]:
    # The tree of the region the view is rendered from; an empty view shows its first
    # address space's root (whose regions are all disabled or empty).
    tree = _Tree(view.root if view.root is not None or not ases else ases[0].root)
    events = transition.events if transition is not None else []
    marks, removed = _changes(events)
    if status == "removed":
        ranges, removed, marks = [], list(view.ranges), {}
    else:
        ranges = list(view.ranges)
    segments = _lay_out(ranges, removed, tree, marks)
    end = max([r.end for r in ranges] + [o.end for o in removed] + [0])
    return {
        "id": f"v{index}",
        "address_spaces": [a.name for a in ases],
        "root": view.root.label if view.root is not None else None,
        "end": hexs(end),
        "ranges": len(ranges),
        "status": status,
        "segments": segments,
        "removed": _removed_json(removed),
        "tree": tree.nodes,
        "changes": sum(1 for s in segments if s.get("change")) + len(removed),
    }


def _meta_lines(reading: Reading) -> list[str]:
    meta = reading.meta
    out = []
    if meta.get("description"):
        out.append(str(meta["description"]))
    bits = [f"{k}: {meta[k]}" for k in ("machine", "qemu_version", "accelerator") if meta.get(k)]
    if bits:
        out.append(", ".join(bits))
    if meta.get("qemu_args"):
        out.append("qemu " + " ".join(str(a) for a in meta["qemu_args"]))
    return out


def _closest(by_as: dict[AddressSpace, Transition], ases: list[AddressSpace]) -> Transition | None:
    """The transition to show for a view: of the address spaces sharing it, the one that
    changed least (a device's bus-master space that was off before maps everything new;
    ``memory`` itself shows what really moved)."""
    found = [by_as[a] for a in ases if a in by_as]
    if not found:
        return None
    return min(
        found, key=lambda t: (t.old is None, sum(ev.kind in ("add", "del") for ev in t.events))
    )


def prepare(
    new: Reading, old: Reading | None = None, *, address_spaces: Collection[str] = ()
) -> dict[str, Any]:
    """The picture's data for ``new`` (changes since ``old`` marked when given).

    :param address_spaces: only the FlatViews serving address spaces of these names.
    """
    views_json: list[dict[str, Any]] = []
    by_as: dict[AddressSpace, Transition] = {}
    gone: list[Transition] = []
    if old is not None:
        for t in transitions(old.machine, new.machine, old.views, new.views):
            if t.new is not None:
                by_as[t.new] = t
            else:
                gone.append(t)
    # The system memory view first, empty views (devices with bus mastering off) last.
    order = sorted(
        new.views, key=lambda v: (not v.ranges, all(a.name != "memory" for a in v.address_spaces))
    )
    for view in order:
        ases = view.address_spaces
        if address_spaces and not any(a.name in address_spaces for a in ases):
            continue
        here = _closest(by_as, ases)
        status = "added" if here is not None and here.old is None else "same"
        views_json.append(_view_json(len(views_json), view, ases, here, status))
    seen: set[FlatView] = set()
    for t in gone:
        assert t.old is not None and old is not None
        if address_spaces and t.old.name not in address_spaces:
            continue
        view = old.view_of(t.old)
        if view in seen:
            continue
        seen.add(view)
        views_json.append(_view_json(len(views_json), view, view.address_spaces, t, "removed"))
    return {
        "schema": SCHEMA,
        "generator": f"qmirror {__version__}",
        "title": new.title,
        "details": _meta_lines(new),
        "old_title": old.title if old is not None else None,
        "kinds": KIND_COLOURS,
        "gap_weight": GAP_WEIGHT,
        "views": views_json,
    }


def to_json(data: dict[str, Any]) -> str:
    """The data as JSON safe to put inside a ``<script>`` element."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    # "</script" would end the element and "<!--" open a comment state: "<" only occurs
    # inside JSON strings, where its \u escape means the same.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _template(name: str) -> str:
    return resources.files("qmirror.views").joinpath("templates", name).read_text(encoding="utf-8")


def to_html(data: dict[str, Any]) -> str:
    """One self-contained HTML page (inline CSS and JS, no network at view time)."""
    page = _template("map.html")
    title = data["title"] + (" — changes" if data.get("old_title") else "")
    return page.replace("{{TITLE}}", _escape(f"qmirror map: {title}")).replace(
        "{{DATA}}", to_json(data)
    )


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
