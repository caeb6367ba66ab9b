"""G3 inference: which of two overlapping equal-priority siblings QEMU added last.

The tree prints siblings sorted by address, so their list order (newest first wins an
overlap) is not in the text. Trying the other order for a pair and keeping it where more
of QEMU's own ``-f`` lines match decides it; each trial re-renders only the stretches
of address space the two siblings cover (see :class:`_OrderTrials`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from qmirror.core.model import (
    Fact,
    Machine,
    MemoryRegion,
    Source,
)
from qmirror.core.render import (
    ChildIndex,
    FlatRange,
    FlatView,
    render,
    walk_visits,
)
from qmirror.rebuild.gaps import is_open, pair_views, record_fact
from qmirror.text.flat import FlatDocument
from qmirror.text.grammar import FlatRangeLine


#: The most equal-priority swaps G3 inference tries per round. Each re-renders only the
#: stretches of address space the two siblings cover; real machines have a handful of
#: such pairs, and beyond this budget a mismatch is left to be reported rather than
#: searched for at any cost.
MAX_ORDER_TRIALS = 64


def _shown(r: FlatRange | _Piece, index: dict[int, FlatRangeLine]) -> bool:
    """Whether QEMU shows our range ``r`` as it is (start, end, name, offset)."""
    h = index.get(r.start)
    return (
        h is not None
        and h.end == r.start + r.size - 1
        and h.name == r.mr.label
        and h.offset == r.offset_in_region
    )


def _matches(ranges: Iterable[FlatRange | _Piece], index: dict[int, FlatRangeLine]) -> int:
    """How many of our ``ranges`` QEMU shows as they are."""
    return sum(1 for r in ranges if _shown(r, index))


def _reordered(
    first: MemoryRegion, second: MemoryRegion, between: Sequence[MemoryRegion]
) -> list[tuple[int, int]]:
    """Where swapping two siblings can change a FlatView, offsets in their parent.

    The swap reverses the fill order of the two, and of each with the siblings between
    them; a place only one of these covers keeps its owner. So only the overlaps of
    either with the other or with one between them can change (issue 13: the whole
    span of the two, a 3 GiB RAM alias and a device, re-rendered all low memory).
    """
    spans: list[tuple[int, int]] = []
    for moved, other in ((first, second), (second, first)):
        lo, hi = moved.addr, moved.addr + moved.size
        for o in (other, *between):
            a, b = max(lo, o.addr), min(hi, o.addr + o.size)
            if a < b:
                spans.append((a, b))
    return spans


class _OrderTrials:
    """The whole render once; each trial swap re-renders only where it can matter.

    Swapping two siblings changes which of the windows filled inside their parent
    comes first only where the two (and the siblings between them) lie, so only the
    span of the two, at each place the walk reaches the parent, is rendered again;
    each such stretch is widened to whole ranges of the first render on both sides,
    where nothing changes, so the ranges merged across its ends are whole too.
    """

    def __init__(
        self, views: list[FlatView], qemu: FlatDocument, parents: set[MemoryRegion]
    ) -> None:
        self.views: list[tuple[FlatView, dict[int, FlatRangeLine], list[int]]] = []
        #: QEMU's range starts of each view, in order (what bounds a trial's gain).
        self.qemu_starts: list[list[int]] = []
        #: For each parent of a candidate pair: (view number, clip start, clip end,
        #: base) of every place the walk reaches it.
        self.places: dict[MemoryRegion, list[tuple[int, int, int, int]]] = {}
        self.regions: set[MemoryRegion] = set()
        self.names: set[str] = set()
        #: The trials re-render small stretches of a machine that only swaps change.
        self.index = ChildIndex()
        for v, b in pair_views(views, qemu):
            index = {h.start: h for h in b.ranges}
            ours = set()
            for r in v.ranges:
                if _shown(r, index):
                    ours.add(r.start)
                elif r.via is not None:
                    self.regions.update(r.via.path())
            self.names.update(h.name for h in b.ranges if h.start not in ours)
            number = len(self.views)
            self.views.append((v, index, [r.start for r in v.ranges]))
            self.qemu_starts.append(sorted(index))
            if v.root is None:
                continue
            for visit, cs, ce, base in walk_visits(v.root):
                if visit.mr in parents:
                    self.places.setdefault(visit.mr, []).append((number, cs, ce, base))

    def _widened(self, number: int, lo: int, hi: int) -> tuple[int, int]:
        """``[lo, hi)`` grown to the first render's ranges across its ends."""
        ranges = self.views[number][0].ranges
        starts = self.views[number][2]
        if lo > 0:
            i = bisect.bisect_right(starts, lo - 1) - 1
            if i >= 0 and ranges[i].end > lo - 1:
                lo = ranges[i].start
        j = bisect.bisect_right(starts, hi) - 1
        if j >= 0 and ranges[j].end > hi:
            hi = ranges[j].end
        return lo, hi

    def gain(
        self,
        parent: MemoryRegion,
        first: MemoryRegion,
        second: MemoryRegion,
        between: Sequence[MemoryRegion] = (),
    ) -> int:
        """Ranges matching QEMU's after the swap (already made) minus before; 0 when it
        cannot be positive. ``between``: the siblings between the two in the list."""
        stretches: dict[int, list[tuple[int, int]]] = {}
        spans = _reordered(first, second, between)
        for number, cs, ce, base in self.places.get(parent, ()):
            for span_lo, span_hi in spans:
                lo, hi = max(cs, base + span_lo), min(ce, base + span_hi)
                if lo < hi:
                    stretches.setdefault(number, []).append((lo, hi))
        # Each stretch gains at most the QEMU lines starting in it that do not match yet
        # (a match is one of them): where that bound is 0 everywhere, as when all of
        # them match, no trial can win and nothing is rendered again.
        work: list[tuple[int, int, int, list[list[int]], int]] = []
        bound = 0
        for number, spans in stretches.items():
            starts = self.views[number][2]
            qemu_starts = self.qemu_starts[number]
            spans.sort()
            # (widened start, widened end, the stretches to render inside it)
            groups: list[tuple[list[int], list[list[int]]]] = []
            for lo, hi in spans:
                wlo, whi = self._widened(number, lo, hi)
                if groups and wlo <= groups[-1][0][1]:
                    wide, parts = groups[-1]
                    wide[1] = max(wide[1], whi)
                    if lo <= parts[-1][1]:
                        parts[-1][1] = max(parts[-1][1], hi)
                    else:
                        parts.append([lo, hi])
                else:
                    groups.append(([wlo, whi], [[lo, hi]]))
            for (lo, hi), parts in groups:
                before = _matches(
                    self.views[number][0].ranges[
                        bisect.bisect_left(starts, lo) : bisect.bisect_left(starts, hi)
                    ],
                    self.views[number][1],
                )
                bound += (
                    bisect.bisect_left(qemu_starts, hi)
                    - bisect.bisect_left(qemu_starts, lo)
                    - before
                )
                work.append((number, lo, hi, parts, before))
        if bound <= 0:
            return 0
        gain = 0
        for number, lo, hi, parts, before in work:
            gain += self._matches_after(number, lo, hi, parts) - before
        return gain

    def _matches_after(self, number: int, lo: int, hi: int, parts: list[list[int]]) -> int:
        """Matches in ``[lo, hi)`` of the view rendered now: only ``parts`` (inside it)
        are rendered again, the rest is the first render's, merged across the seams as
        the whole render would (issue 13: ``[lo, hi)`` is widened to whole ranges of
        the first render, and one RAM range can span all of low memory)."""
        view, index, starts = self.views[number]
        first = view.ranges
        pieces: list[_Piece] = []

        def add(start: int, size: int, mr: MemoryRegion, offset: int, ro: bool, nv: bool) -> None:
            if pieces:
                p = pieces[-1]
                # flatview_simplify, as in render(): contiguous in the same region.
                if (
                    p.start + p.size == start
                    and p.mr is mr
                    and p.offset_in_region + p.size == offset
                    and p.readonly == ro
                    and p.nonvolatile == nv
                ):
                    p.size += size
                    return
            pieces.append(_Piece(start, size, mr, offset, ro, nv))

        def unchanged(a: int, b: int) -> None:
            k = max(bisect.bisect_right(starts, a) - 1, 0)
            while k < len(first) and first[k].start < b:
                r = first[k]
                s, e = max(r.start, a), min(r.start + r.size, b)
                if s < e:
                    add(s, e - s, r.mr, r.offset_in_region + s - r.start, r.readonly, r.nonvolatile)
                k += 1

        pos = lo
        for a, b in parts:
            unchanged(pos, a)
            for r in render(view.root, a, b, self.index):
                add(r.start, r.size, r.mr, r.offset_in_region, r.readonly, r.nonvolatile)
            pos = b
        unchanged(pos, hi)
        return _matches(pieces, index)


class _Piece:
    """A range of a FlatView pieced together from two renders (see _matches_after)."""

    __slots__ = ("mr", "nonvolatile", "offset_in_region", "readonly", "size", "start")

    def __init__(
        self, start: int, size: int, mr: MemoryRegion, offset: int, ro: bool, nv: bool
    ) -> None:
        self.start, self.size, self.mr = start, size, mr
        self.offset_in_region, self.readonly, self.nonvolatile = offset, ro, nv


def infer_order(
    machine: Machine, qemu: FlatDocument, decided: list[Fact], views: list[FlatView]
) -> bool:
    """G3: try the other order for overlapping equal-priority siblings; keep what matches.

    Pairs with a region on the way to a mismatching range (or named by one of QEMU's
    unmatched lines) are tried first, at most :data:`MAX_ORDER_TRIALS` of them.
    """
    pairs: list[tuple[MemoryRegion, MemoryRegion]] = []
    parents: set[MemoryRegion] = set()
    for mr in machine.regions():
        parent = mr.container
        if parent is None or not is_open(mr, "order"):
            continue
        subs = parent.subregions
        i = subs.index(mr)
        rival = next(
            (
                s
                for s in subs[i + 1 :]
                if s.priority == mr.priority
                and s.enabled
                and s.addr < mr.addr + mr.size
                and mr.addr < s.addr + s.size
            ),
            None,
        )
        if rival is not None:
            pairs.append((mr, rival))
            parents.add(parent)
    if not pairs:
        return False
    trials = _OrderTrials(views, qemu, parents)
    regions, names = trials.regions, trials.names
    pairs.sort(key=lambda p: not any(m in regions or m.label in names for m in p))
    for mr, rival in pairs[:MAX_ORDER_TRIALS]:
        parent = rival.container
        assert parent is not None
        subs = parent.subregions
        i, j = subs.index(mr), subs.index(rival)
        subs[i], subs[j] = subs[j], subs[i]
        trials.index.swap(parent, i, j)
        gain = trials.gain(parent, mr, rival, subs[i + 1 : j])
        trials.index.swap(None)
        if gain > 0:
            fact = Fact(
                "G3",
                "order",
                f"below {rival.label}",
                Source.INFERRED,
                f"with {rival.label!r} added after it, {gain} more ranges match QEMU's",
            )
            record_fact(mr, decided, fact)
            return True
        subs[i], subs[j] = subs[j], subs[i]
    return False
