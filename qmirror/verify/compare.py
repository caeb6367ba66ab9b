"""Compare our rendered FlatViews with QEMU's ``info mtree -f``, and explain differences.

FlatViews are matched by the address spaces they serve (the multiset of their
`` AS`` lines), never by ``FlatView #N`` or position: QEMU prints them in hash order
(reference §3.4). Within a matched pair, ranges are keyed by their start. A cheap
set pass finds the keys that differ; only those go to DeepDiff, whose structured
result is kept for machine-readable reports. Every difference is explained from our
side: which region produced our range, and the path of containers, aliases and
priorities that led there. With ``dispatch``, the ``-d`` dumps of each matched pair
are compared too (:func:`qmirror.sim.dispatch.diff_dispatch`).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import attrgetter, lt
from typing import Any

from qmirror.core.render import FlatRange, Visit
from qmirror.rebuild.gaps import ViewKey, block_key
from qmirror.sim.dispatch import DispatchDiff, diff_dispatch
from qmirror.text.document import FlatViewBlock
from qmirror.text.flat import FlatDocument
from qmirror.text.grammar import FlatRangeLine, hex16


#: Fields of a range line compared, in report order.
FIELDS = ("end", "priority", "nonvolatile", "type_word", "name", "offset", "ownership", "accel")


@dataclass(slots=True)
class RangeDiff:
    """One range that differs. ``missing``: only QEMU has it; ``extra``: only we do."""

    start: int
    kind: str  # "missing" | "extra" | "changed"
    qemu: FlatRangeLine | None
    ours: FlatRangeLine | None
    fields: list[str]
    explanation: str


@dataclass(slots=True)
class ViewResult:
    """The verdict for one FlatView (one group of address spaces)."""

    address_spaces: list[str]
    status: str  # "match" | "mismatch" | "only-qemu" | "only-ours"
    qemu_root: str | None
    our_root: str | None
    qemu_number: int | None
    ranges: int
    diffs: list[RangeDiff] = field(default_factory=list)
    deepdiff: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    #: Whether the ``-d`` dispatch dumps were compared (``check --dispatch``).
    dispatch_compared: bool = False
    #: QEMU's section and node counts, when compared.
    dispatch_sections: int = 0
    dispatch_nodes: int = 0
    dispatch_diffs: list[DispatchDiff] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "match"


@dataclass(slots=True)
class Comparison:
    """The whole verdict: one :class:`ViewResult` per FlatView of either side."""

    views: list[ViewResult]
    accel_compared: bool
    #: QEMU's accelerator words we did not predict (reported, not a mismatch).
    accel_unpredicted: int = 0

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.views)

    @property
    def result(self) -> str:
        return "match" if self.ok else "mismatch"


def _record(r: FlatRangeLine, *, owners: bool, accel: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "end": hex16(r.end),
        "priority": r.priority,
        "nonvolatile": r.nonvolatile,
        "type_word": r.type_word,
        "name": r.name,
        "offset": hex16(r.offset),
    }
    if owners:
        rec["ownership"] = None if r.ownership is None else repr(r.ownership)
    if accel:
        rec["accel"] = list(r.accel)
    return rec


_END = attrgetter("end")


def describe_path(visit: Visit | None) -> str:
    """``system › pci › alias isa-bios @pc.bios › pc.bios`` for a render walk step."""
    if visit is None:
        return "?"
    parts = []
    for mr in visit.path():
        if mr.alias is not None:
            ro = ", read-only" if mr.readonly else ""
            parts.append(f"alias {mr.label} @{mr.alias.label} (prio {mr.priority}{ro})")
        elif mr.container is not None and mr.priority:
            parts.append(f"{mr.label} (prio {mr.priority})")
        else:
            parts.append(mr.label)
    return " › ".join(parts)


def _ours_at(rendered: list[FlatRange], addr: int) -> FlatRange | None:
    # The first range that ends after addr (ranges are in address order).
    i = bisect.bisect_right(rendered, addr, key=_END)
    if i < len(rendered) and rendered[i].start <= addr:
        return rendered[i]
    return None


def _explain(
    start: int,
    kind: str,
    fields: list[str],
    ours_block: FlatViewBlock,
    qemu_line: FlatRangeLine | None,
) -> str:
    mine = _ours_at(ours_block.rendered, start)
    if kind == "missing":
        assert qemu_line is not None
        if mine is None:
            return f"QEMU has '{qemu_line.name}' here; our model renders nothing at {hex16(start)}"
        return (
            f"QEMU has '{qemu_line.name}' here; at {hex16(start)} we render "
            f"'{mine.mr.label}' (from {hex16(mine.start)}) via "
            f"{describe_path(mine.visit_at(start))}"
        )
    assert mine is not None
    how = f"ours comes from {describe_path(mine.visit_at(start))}"
    if kind == "extra":
        return f"QEMU has no range starting here; {how}"
    return f"{', '.join(fields)} differ; {how}"


def compare(
    ours: FlatDocument, qemu: FlatDocument, *, accel: bool, dispatch: bool = False
) -> Comparison:
    """Compare our FlatView document with QEMU's.

    :param accel: our document predicts QEMU's accelerator words; when False they are
        ignored in the comparison and counted in :attr:`Comparison.accel_unpredicted`.
    :param dispatch: compare the ``-d`` dispatch dumps too (both documents carry them).
    """
    owners = ours.owners and qemu.owners
    results: list[ViewResult] = []
    index: dict[ViewKey, list[FlatViewBlock]] = {}
    for b in qemu.views:
        index.setdefault(block_key(b), []).append(b)
    unpredicted = 0 if accel else sum(1 for b in qemu.views for r in b.ranges if r.accel)
    for ob in ours.views:
        cands = index.get(block_key(ob), [])
        names = [a.name for a in ob.address_spaces]
        if not cands:
            results.append(
                ViewResult(
                    names,
                    "only-ours",
                    None,
                    ob.root,
                    None,
                    len(ob.ranges),
                    note=_sharing_note(ob, qemu),
                )
            )
            continue
        qb = _best_candidate(ob, cands, owners, accel)
        cands.remove(qb)
        result = _compare_view(ob, qb, owners=owners, accel=accel)
        if dispatch:
            _compare_dispatch(ob, qb, result)
        results.append(result)
    for blocks in index.values():
        for qb in blocks:
            results.append(
                ViewResult(
                    [a.name for a in qb.address_spaces],
                    "only-qemu",
                    qb.root,
                    None,
                    qb.number,
                    len(qb.ranges),
                    note=_sharing_note(qb, ours),
                )
            )
    return Comparison(results, accel, unpredicted)


def _sharing_note(block: FlatViewBlock, other: FlatDocument) -> str:
    """Where the other side put these address spaces: FlatView sharing differs."""
    elsewhere = []
    for a in block.address_spaces:
        for ob in other.views:
            if any(x == a for x in ob.address_spaces):
                mates = [f'"{x.name}"' for x in ob.address_spaces if x != a]
                elsewhere.append(
                    f'the other side has "{a.name}" with '
                    + (", ".join(mates) if mates else "no other address space")
                )
                break
        else:
            elsewhere.append(f'the other side has no address space "{a.name}"')
    return "; ".join(elsewhere)


def _best_candidate(
    ob: FlatViewBlock, cands: list[FlatViewBlock], owners: bool, accel: bool
) -> FlatViewBlock:
    """Among QEMU blocks with the same address spaces, the one that matches best."""
    if len(cands) == 1:
        return cands[0]
    return min(cands, key=lambda qb: len(_compare_view(ob, qb, owners=owners, accel=accel).diffs))


def _compare_view(ob: FlatViewBlock, qb: FlatViewBlock, *, owners: bool, accel: bool) -> ViewResult:
    names = [a.name for a in qb.address_spaces]
    fields_seen = [f for f in FIELDS if (owners or f != "ownership") and (accel or f != "accel")]
    # All compared fields at once: one C call per range instead of a getattr per field.
    seen = attrgetter(*fields_seen)
    diffs: list[RangeDiff] = []
    for start, o, q in _paired(ob.ranges, qb.ranges):
        if o is None:
            diffs.append(
                RangeDiff(start, "missing", q, None, [], _explain(start, "missing", [], ob, q))
            )
        elif q is None:
            diffs.append(
                RangeDiff(start, "extra", None, o, [], _explain(start, "extra", [], ob, None))
            )
        elif seen(o) != seen(q):
            fields = [f for f in fields_seen if getattr(o, f) != getattr(q, f)]
            diffs.append(
                RangeDiff(start, "changed", q, o, fields, _explain(start, "changed", fields, ob, q))
            )
    status = "match" if not diffs and ob.root == qb.root else "mismatch"
    result = ViewResult(names, status, qb.root, ob.root, qb.number, len(qb.ranges), diffs)
    if ob.root != qb.root:
        result.note = f"root memory region: QEMU {qb.root or '(none)'}, ours {ob.root or '(none)'}"
    if diffs:
        result.deepdiff = _deepdiff(diffs, owners=owners, accel=accel)
    return result


def _compare_dispatch(ob: FlatViewBlock, qb: FlatViewBlock, result: ViewResult) -> None:
    """Add the differences of the two ``-d`` dumps of a matched pair of FlatViews."""
    od, qd = ob.dispatch_dump, qb.dispatch_dump
    if od is None and qd is None:
        return  # no root or no ranges: QEMU prints no dump
    result.dispatch_compared = True
    if qd is not None:
        result.dispatch_sections, result.dispatch_nodes = len(qd.sections), len(qd.nodes)
    if od is None or qd is None:
        side = "QEMU" if qd is not None else "ours"
        result.dispatch_diffs.append(
            DispatchDiff(
                "dispatch",
                "missing" if od is None else "extra",
                "a dispatch dump" if qd is not None else None,
                "a dispatch dump" if od is not None else None,
                f"only {side} prints a dispatch dump for this FlatView",
            )
        )
    else:
        result.dispatch_diffs.extend(diff_dispatch(od, qd))
    if result.dispatch_diffs:
        result.status = "mismatch"


def _paired(
    ours: list[FlatRangeLine], qemu: list[FlatRangeLine]
) -> Iterator[tuple[int, FlatRangeLine | None, FlatRangeLine | None]]:
    """Both sides' ranges paired by start address, in address order."""
    if not (_ascending(ours) and _ascending(qemu)):
        # Out of order or a start repeated (edited text): keyed by start, the last wins.
        ours_by = {r.start: r for r in ours}
        qemu_by = {r.start: r for r in qemu}
        for start in sorted(ours_by.keys() | qemu_by.keys()):
            yield start, ours_by.get(start), qemu_by.get(start)
        return
    # Both in address order, as QEMU prints them: a linear merge, no hashing or sorting.
    i = j = 0
    n, m = len(ours), len(qemu)
    while i < n and j < m:
        o, q = ours[i], qemu[j]
        if o.start == q.start:
            yield o.start, o, q
            i += 1
            j += 1
        elif o.start < q.start:
            yield o.start, o, None
            i += 1
        else:
            yield q.start, None, q
            j += 1
    for o in ours[i:]:
        yield o.start, o, None
    for q in qemu[j:]:
        yield q.start, None, q


def _ascending(ranges: list[FlatRangeLine]) -> bool:
    starts = [r.start for r in ranges]
    return all(map(lt, starts, starts[1:]))


def _deepdiff(diffs: list[RangeDiff], *, owners: bool, accel: bool) -> dict[str, Any]:
    """DeepDiff of just the differing keys (a pre-pass keeps the rest out: §3.2)."""
    left = {
        hex16(d.start): _record(d.qemu, owners=owners, accel=accel)
        for d in diffs
        if d.qemu is not None
    }
    right = {
        hex16(d.start): _record(d.ours, owners=owners, accel=accel)
        for d in diffs
        if d.ours is not None
    }
    from deepdiff import DeepDiff  # here: it costs more to import than a matching check

    dd = DeepDiff(left, right, verbose_level=2, threshold_to_diff_deeper=0)
    loaded = json.loads(dd.to_json())
    assert isinstance(loaded, dict)
    return loaded
