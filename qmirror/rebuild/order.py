"""G3 inference: which of two overlapping equal-priority siblings QEMU added last.

The tree prints siblings sorted by address, so their list order (newest first wins an
overlap) is not in the text. Trying the other order for a pair and keeping it where more
of QEMU's own ``-f`` lines match decides it; each trial re-renders only the stretches
of address space the two siblings cover (see :class:`_OrderTrials`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from qmirror.core.model import (
    Fact,
    Machine,
    MemoryRegion,
    Source,
)
from qmirror.core.render import (
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


def _matches(ranges: Iterable[FlatRange], index: dict[int, FlatRangeLine]) -> int:
    """How many of our ``ranges`` QEMU shows as they are (start, end, name, offset)."""
    n = 0
    for r in ranges:
        h = index.get(r.start)
        if (
            h is not None
            and h.end == r.start + r.size - 1
            and h.name == r.mr.label
            and h.offset == r.offset_in_region
        ):
            n += 1
    return n


class _OrderTrials:
    """The whole render once; each trial swap re-renders only where it can matter.

    Swapping two siblings changes which of the windows filled inside their parent
    comes first only where the two (and the siblings between them) lie, so only the
    span of the two, at each place the walk reaches the parent, is rendered again;
    each such stretch is widened to whole ranges of the first render on both sides,
    where nothing changes, so the ranges merged across its ends are whole too.
    """

    def __init__(self, views: list[FlatView], qemu: FlatDocument, parents: set[int]) -> None:
        self.views: list[tuple[FlatView, dict[int, FlatRangeLine], list[int]]] = []
        #: QEMU's range starts of each view, in order (what bounds a trial's gain).
        self.qemu_starts: list[list[int]] = []
        #: For each parent of a candidate pair: (view number, clip start, clip end,
        #: base) of every place the walk reaches it.
        self.places: dict[int, list[tuple[int, int, int, int]]] = {}
        self.regions: set[int] = set()
        self.names: set[str] = set()
        for v, b in pair_views(views, qemu):
            index = {h.start: h for h in b.ranges}
            ours = set()
            for r in v.ranges:
                h = index.get(r.start)
                if (
                    h is not None
                    and h.end == r.start + r.size - 1
                    and h.name == r.mr.label
                    and h.offset == r.offset_in_region
                ):
                    ours.add(r.start)
                elif r.via is not None:
                    self.regions.update(id(m) for m in r.via.path())
            self.names.update(h.name for h in b.ranges if h.start not in ours)
            number = len(self.views)
            self.views.append((v, index, [r.start for r in v.ranges]))
            self.qemu_starts.append(sorted(index))
            if v.root is None:
                continue
            for visit, cs, ce, base in walk_visits(v.root):
                if id(visit.mr) in parents:
                    self.places.setdefault(id(visit.mr), []).append((number, cs, ce, base))

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

    def gain(self, parent: MemoryRegion, first: MemoryRegion, second: MemoryRegion) -> int:
        """Ranges matching QEMU's after the swap (already made) minus before; 0 when it
        cannot be positive."""
        span_lo = min(first.addr, second.addr)
        span_hi = max(first.addr + first.size, second.addr + second.size)
        stretches: dict[int, list[tuple[int, int]]] = {}
        for number, cs, ce, base in self.places.get(id(parent), ()):
            lo, hi = max(cs, base + span_lo), min(ce, base + span_hi)
            if lo < hi:
                stretches.setdefault(number, []).append(self._widened(number, lo, hi))
        # Each stretch gains at most the QEMU lines starting in it that do not match yet
        # (a match is one of them): where that bound is 0 everywhere, as when all of
        # them match, no trial can win and nothing is rendered again.
        work: list[tuple[int, int, int, int]] = []
        bound = 0
        for number, spans in stretches.items():
            starts = self.views[number][2]
            qemu_starts = self.qemu_starts[number]
            spans.sort()
            merged: list[list[int]] = []
            for lo, hi in spans:
                if merged and lo <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            for lo, hi in merged:
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
                work.append((number, lo, hi, before))
        if bound <= 0:
            return 0
        gain = 0
        for number, lo, hi, before in work:
            view, index, _ = self.views[number]
            gain += _matches(render(view.root, lo, hi), index) - before
        return gain


def infer_order(
    machine: Machine, qemu: FlatDocument, decided: list[Fact], views: list[FlatView]
) -> bool:
    """G3: try the other order for overlapping equal-priority siblings; keep what matches.

    Pairs with a region on the way to a mismatching range (or named by one of QEMU's
    unmatched lines) are tried first, at most :data:`MAX_ORDER_TRIALS` of them.
    """
    pairs: list[tuple[MemoryRegion, MemoryRegion]] = []
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
    if not pairs:
        return False
    trials = _OrderTrials(views, qemu, {id(mr.container) for mr, _ in pairs})
    regions, names = trials.regions, trials.names
    pairs.sort(key=lambda p: not any(id(m) in regions or m.label in names for m in p))
    for mr, rival in pairs[:MAX_ORDER_TRIALS]:
        parent = rival.container
        assert parent is not None
        subs = parent.subregions
        i, j = subs.index(mr), subs.index(rival)
        subs[i], subs[j] = subs[j], subs[i]
        gain = trials.gain(parent, mr, rival)
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
