"""Rendering MemoryRegion trees into FlatViews, with QEMU's result (reference §2, §3).

QEMU's ``render_memory_region`` walks the tree depth first (subregions in list
order, a terminating region filling its own holes after its children) and inserts
each piece into a sorted array wherever the space is still free: first come, first
served, at a cost that grows with regions × ranges.

We split the same work in two:

1. the walk, identical to QEMU's, produces *windows*: each time a terminating region
   would fill, the clip it fills (absolute start/end), its base and its flags, in
   fill order;
2. a sweep over the window boundaries with a heap keyed by fill order gives, for
   every stretch of the address space, the earliest window covering it — exactly
   the piece QEMU's first-come-first-served insertion leaves there.

Then adjacent pieces merge as in ``flatview_simplify``. The result equals QEMU's and
costs O(w log w) for w windows. Windows remember the path that led to them, so a
difference can be explained down to the alias or priority that decided it.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from qmirror.core.bulk import gc_paused
from qmirror.core.model import SIZE_2_64, AddressSpace, Machine, MemoryRegion, RegionKind
from qmirror.errors import ModelError


@dataclass(slots=True, eq=False)
class Visit:
    """One step of the render walk: a region reached from its parent step."""

    mr: MemoryRegion
    parent: Visit | None
    #: Aliases entered on the way here; bounds the walk on alias cycles.
    aliases: int = 0
    #: Steps from the FlatView root; bounds the walk on cycles of subregions.
    depth: int = 0

    def path(self) -> list[MemoryRegion]:
        """The regions from the FlatView root down to this one (aliases included)."""
        out: list[MemoryRegion] = []
        v: Visit | None = self
        while v is not None:
            out.append(v.mr)
            v = v.parent
        out.reverse()
        return out


@dataclass(slots=True, eq=False)
class FlatRange:
    """A piece of a FlatView (QEMU's ``FlatRange``)."""

    mr: MemoryRegion
    start: int
    size: int
    offset_in_region: int
    readonly: bool
    nonvolatile: bool
    romd_mode: bool
    dirty_log_mask: int
    #: How the walk reached ``mr`` for the first piece of this range.
    via: Visit | None = None
    #: For a range merged from pieces reached different ways: (start, visit) of each
    #: later piece, so a difference can be explained at any address.
    parts: list[tuple[int, Visit]] | None = None

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.start + self.size

    def visit_at(self, addr: int) -> Visit | None:
        """How the walk reached the byte at ``addr`` of this range."""
        visit = self.via
        for start, v in self.parts or ():
            if start > addr:
                break
            visit = v
        return visit

    def same_as(self, other: FlatRange) -> bool:
        """QEMU's ``flatrange_equal``: what the listener diff compares (not the dirty mask)."""
        return (
            self.mr is other.mr
            and self.start == other.start
            and self.size == other.size
            and self.offset_in_region == other.offset_in_region
            and self.romd_mode == other.romd_mode
            and self.readonly == other.readonly
            and self.nonvolatile == other.nonvolatile
        )


@dataclass(eq=False)
class FlatView:
    """A rendered view, shared by every AddressSpace whose root resolves to ``root``."""

    root: MemoryRegion | None
    ranges: list[FlatRange]
    address_spaces: list[AddressSpace] = field(default_factory=list)


def flatview_root(mr: MemoryRegion | None) -> MemoryRegion | None:
    """The region a FlatView is rendered from (``memory_region_get_flatview_root``).

    Walks down through aliases that cover their whole target from offset 0 and
    through containers whose single enabled child covers them from 0, so more
    address spaces share one FlatView. ``None`` means the shared empty view.
    """
    seen: set[MemoryRegion] = set()
    while mr is not None and mr.enabled:
        if mr in seen:
            return mr  # an alias loop: let the renderer report it
        seen.add(mr)
        if mr.alias is not None:
            if mr.alias_offset == 0 and mr.size >= mr.alias.size:
                mr = mr.alias
                continue
            return mr
        if not mr.terminates:
            enabled = [c for c in mr.subregions if c.enabled]
            if not enabled:
                return None
            if len(enabled) == 1 and enabled[0].addr == 0 and mr.size >= enabled[0].size:
                mr = enabled[0]
                continue
        return mr
    return None


@dataclass(slots=True)
class _Window:
    start: int
    end: int
    base: int
    readonly: bool
    nonvolatile: bool
    visit: Visit


#: No real machine nests aliases this deep: past it, and every as many hops again,
#: the walk checks whether it is going round an alias cycle.
_MAX_ALIAS_HOPS = 4096


def _refuse_alias_cycle(mr: MemoryRegion, parent: Visit | None, hops: int) -> None:
    """Raise if entering alias ``mr`` at ``hops`` aliases deep goes round a cycle.

    Only looks (up the whole path) when ``hops`` is just past a multiple of the limit,
    so a long but loop-free chain costs a few walks up, and a cycle is caught within
    one more round of it.
    """
    if hops <= _MAX_ALIAS_HOPS or hops % _MAX_ALIAS_HOPS != 1:
        return
    v = parent
    while v is not None:
        if v.mr is mr:
            raise ModelError(
                f"the render walk goes through alias {mr.label!r} over and over: an alias cycle"
            )
        v = v.parent


def _refuse_subregion_cycle(mr: MemoryRegion, parent: Visit | None, depth: int) -> None:
    """Raise if the walk, ``depth`` steps down, has come round to ``mr`` through
    subregions alone (add_subregion refuses such a cycle; hand-edited lists do not).

    Looks only just past each multiple of the alias limit, as for alias cycles; a cycle
    with an alias in it is left to :func:`_refuse_alias_cycle`.
    """
    if depth <= _MAX_ALIAS_HOPS or depth % _MAX_ALIAS_HOPS != 1:
        return
    v = parent
    while v is not None and v.mr.alias is None:
        if v.mr is mr:
            raise ModelError(
                f"the render walk goes through {mr.label!r} over and over: "
                "a cycle of subregions (were the lists edited by hand?)"
            )
        v = v.parent


#: Containers with fewer children are walked child by child even in a clipped walk.
_INDEXED_FROM = 16


class ChildIndex:
    """Children by address, for walks clipped to a small stretch (re-renders of a part).

    A clipped walk still met every child of every container on its way and dropped
    those outside the clip: one trial of G3 inference walked all the buses of a
    100k-region machine (issue 13). With the children of each big container sorted by
    address, a clipped walk meets only those that may lie in the clip, still in list
    order. Valid while no list changes, except swaps announced with :meth:`swap`.
    """

    __slots__ = ("_entries", "_swap")

    def __init__(self) -> None:
        #: Per container: list positions sorted by address, their starts and ends,
        #: and the running maximum of the ends.
        self._entries: dict[MemoryRegion, tuple[list[int], list[int], list[int], list[int]]] = {}
        self._swap: tuple[MemoryRegion, int, int] | None = None

    def swap(self, parent: MemoryRegion | None, i: int = 0, j: int = 0) -> None:
        """Children ``i`` and ``j`` of ``parent`` trade places (``None``: swapped back)."""
        self._swap = None if parent is None else (parent, i, j)

    def within(self, mr: MemoryRegion, lo: int, hi: int) -> Sequence[MemoryRegion]:
        """``mr``'s children that may meet ``[lo, hi)`` (offsets in ``mr``), in list
        order: all that do, perhaps more (the walk tests each one anyway)."""
        subs = mr.subregions
        if len(subs) < _INDEXED_FROM:
            return subs
        entry = self._entries.get(mr)
        if entry is None:
            order = sorted(range(len(subs)), key=lambda p: subs[p].addr)
            starts = [subs[p].addr for p in order]
            ends = [subs[p].addr + subs[p].size for p in order]
            entry = self._entries[mr] = (order, starts, ends, list(itertools.accumulate(ends, max)))
        order, starts, ends, reach = entry
        # Starting inside the clip (a zero-sized child too), or before it and ending in it.
        m = bisect_left(starts, lo)
        picked = order[m : bisect_left(starts, hi)]
        k = m - 1
        while k >= 0 and reach[k] > lo:
            if ends[k] > lo:
                picked.append(order[k])
            k -= 1
        if self._swap is not None and self._swap[0] is mr:
            _, a, b = self._swap
            picked = [b if p == a else a if p == b else p for p in picked]
        picked.sort()
        return [subs[p] for p in picked]


def _collect_windows(
    root: MemoryRegion, lo: int = 0, hi: int = SIZE_2_64, index: ChildIndex | None = None
) -> list[_Window]:
    """QEMU's render walk; returns the fill windows of terminating regions in fill order.

    ``[lo, hi)`` clips the walk from the start: the windows are the whole walk's
    windows cut to it, and whatever lies outside is not walked; ``index`` makes a walk
    clipped to a small stretch skip the children of big containers outside it.
    """
    windows: list[_Window] = []
    # Stack items: (region, base, clip start, clip end, ro, nv, parent visit) or a
    # pending window, pushed before the children so it pops after them.
    stack: list[tuple[MemoryRegion, int, int, int, bool, bool, Visit | None] | _Window] = [
        (root, 0, lo, hi, False, False, None)
    ]
    while stack:
        item = stack.pop()
        if isinstance(item, _Window):
            windows.append(item)
            continue
        mr, base, cs, ce, ro, nv, parent = item
        if not mr.enabled:
            continue
        base += mr.addr
        ro = ro or mr.readonly
        nv = nv or mr.nonvolatile
        ms, me = base, base + mr.size
        # QEMU's addrrange_intersects: either range contains the other's start.
        if not (ms <= cs < me or cs <= ms < ce):
            continue
        cs, ce = max(ms, cs), min(me, ce)
        target = mr.alias
        if parent is not None:
            hops, depth = parent.aliases, parent.depth + 1
        else:
            hops = depth = 0
        if target is not None:
            hops += 1
            _refuse_alias_cycle(mr, parent, hops)
            visit = Visit(mr, parent, hops, depth)
            stack.append((target, base - target.addr - mr.alias_offset, cs, ce, ro, nv, visit))
            continue
        _refuse_subregion_cycle(mr, parent, depth)
        visit = Visit(mr, parent, hops, depth)
        if mr.terminates and ce > cs:
            stack.append(_Window(cs, ce, base, ro, nv, visit))
        kids = mr.subregions if index is None else index.within(mr, cs - base, ce - base)
        for child in reversed(kids):
            stack.append((child, base, cs, ce, ro, nv, visit))
    return windows


def walk_visits(root: MemoryRegion) -> Iterator[tuple[Visit, int, int, int]]:
    """Every region the render walk reaches from ``root``, with its clip and base.

    Yields ``(visit, clip_start, clip_end, base)`` in walk order, where ``base`` is the
    absolute address of the region's offset 0 (after alias shifts). Disabled regions
    and regions outside the clip are not reached, as in QEMU.
    """
    stack: list[tuple[MemoryRegion, int, int, int, Visit | None]] = [(root, 0, 0, SIZE_2_64, None)]
    while stack:
        mr, base, cs, ce, parent = stack.pop()
        if not mr.enabled:
            continue
        base += mr.addr
        ms, me = base, base + mr.size
        if not (ms <= cs < me or cs <= ms < ce):
            continue
        cs, ce = max(ms, cs), min(me, ce)
        if parent is not None:
            hops, depth = parent.aliases + (mr.alias is not None), parent.depth + 1
        else:
            hops, depth = int(mr.alias is not None), 0
        if mr.alias is not None:
            _refuse_alias_cycle(mr, parent, hops)
        else:
            _refuse_subregion_cycle(mr, parent, depth)
        visit = Visit(mr, parent, hops, depth)
        yield visit, cs, ce, base
        target = mr.alias
        if target is not None:
            stack.append((target, base - target.addr - mr.alias_offset, cs, ce, visit))
            continue
        for child in reversed(mr.subregions):
            stack.append((child, base, cs, ce, visit))


def render(
    root: MemoryRegion | None,
    lo: int = 0,
    hi: int = SIZE_2_64,
    index: ChildIndex | None = None,
) -> list[FlatRange]:
    """Render ``root`` into the merged FlatRanges of its FlatView (QEMU's result).

    With ``[lo, hi)``, only that part of the address space: the same pieces as the
    whole render cut to it, merged inside it only (so a range that the whole render
    continues across ``lo`` or ``hi`` comes out cut there). ``index`` speeds up many
    renders of small stretches of an unchanging machine (:class:`ChildIndex`).
    """
    if root is None:
        return []
    windows = _collect_windows(root, lo, hi, index)
    if not windows:
        return []
    # Sweep: at each boundary the owner is the earliest-filled window still open.
    events: list[tuple[int, int]] = []
    for i, w in enumerate(windows):
        events.append((w.start, i))
        events.append((w.end, i))
    events.sort()
    heap: list[int] = []
    open_ = bytearray(len(windows))
    pieces: list[FlatRange] = []
    last_visit: Visit | None = None
    n = len(events)
    k = 0
    while k < n:
        pos = events[k][0]
        while k < n and events[k][0] == pos:
            i = events[k][1]
            if windows[i].start == pos and not open_[i]:
                open_[i] = 1
                heapq.heappush(heap, i)
            else:
                open_[i] = 0
            k += 1
        while heap and not open_[heap[0]]:
            heapq.heappop(heap)
        if not heap or k >= n:
            continue
        nxt = events[k][0]
        w = windows[heap[0]]
        mr = w.visit.mr
        prev = pieces[-1] if pieces else None
        if (
            prev is not None
            and prev.end == pos
            and prev.mr is mr
            and prev.offset_in_region + prev.size == pos - w.base
            and prev.readonly == w.readonly
            and prev.nonvolatile == w.nonvolatile
        ):
            # flatview_simplify: same region, contiguous offsets, same flags. (romd_mode
            # and the dirty mask come from the region, so they cannot differ.)
            prev.size += nxt - pos
            if w.visit is not last_visit:
                if prev.parts is None:
                    prev.parts = []
                prev.parts.append((pos, w.visit))
                last_visit = w.visit
            continue
        last_visit = w.visit
        pieces.append(
            FlatRange(
                mr,
                pos,
                nxt - pos,
                pos - w.base,
                w.readonly,
                w.nonvolatile,
                mr.romd_mode,
                mr.dirty_log_mask,
                w.visit,
            )
        )
    return pieces


def render_machine(machine: Machine, *, check: bool = True) -> list[FlatView]:
    """Render every address space, sharing FlatViews by resolved root (reference §3.1).

    :param check: first refuse models QEMU would hang on (:meth:`Machine.check`); pass
        False for a machine already checked since it last changed.

    Views come in the order of the first address space (creation order) that uses
    each; inside a view, address spaces are in creation order.
    """
    with gc_paused():
        return _render_machine(machine, check)


def _render_machine(machine: Machine, check: bool) -> list[FlatView]:
    if check:
        machine.check()
    views: dict[MemoryRegion | None, FlatView] = {}
    for a in machine.address_spaces:
        root = flatview_root(a.root)
        view = views.get(root)
        if view is None:
            view = views[root] = FlatView(root, render(root))
        view.address_spaces.append(a)
    return list(views.values())


def range_kind(r: FlatRange) -> str:
    """What the guest finds in a range: ``ram``, ``rom`` (read-only RAM), ``romd`` (a
    ROM device in ROMD mode), ``ramd``, ``iommu`` or ``i/o`` (callbacks)."""
    mr = r.mr
    if mr.kind is RegionKind.ROMD:
        return "romd" if r.romd_mode else "i/o"
    if mr.kind is RegionKind.RAMD:
        return "ramd"
    if mr.is_ram:
        return "rom" if r.readonly else "ram"
    if mr.kind is RegionKind.IOMMU:
        return "iommu"
    return "i/o"
