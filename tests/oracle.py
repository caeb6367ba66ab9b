"""A brute-force FlatView oracle for property tests (test-only, simple and slow).

Written from the specification alone (docs/memory-semantics-notes.md §2.2–§2.5, §3.1), not from
:mod:`qmirror.core.render`, so that the two can disagree:

* :func:`resolve` answers "which terminating region answers at this address?" by
  walking the tree the way QEMU's renderer visits it: subregions in list order, a
  region's own content only after its children, aliases shifting the coordinates,
  disabled subtrees skipped, every window on the path clipping, ``readonly`` and
  ``nonvolatile`` OR-ed along the path. The first terminating region whose whole
  path covers the address wins (first come, first served, §2.3).
* :func:`boundaries` lists every address where that answer can change: the start
  and end of every window the walk can enter. Between two neighbours nothing on any
  path changes, so one :func:`resolve` per stretch suffices.
* :func:`render_oracle` turns the stretches into FlatRanges and merges neighbours
  like ``flatview_simplify`` (§2.5); :func:`render_machine_oracle` resolves each
  AddressSpace's FlatView root (§3.1) and shares views by it.

Everything is recursive and exponential in alias fan-in: fine for the small random
trees of the property tests, useless for anything real. Alias loops are cut off by
a depth limit and reported as :class:`OracleLoop`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from qmirror.core.model import AddressSpace, Machine, MemoryRegion


TOP = 1 << 64
#: Deeper than any random tree the tests build; only an alias loop gets here.
MAX_DEPTH = 200


class OracleLoop(Exception):
    """The walk went deeper than :data:`MAX_DEPTH`: an alias loop or container cycle."""


@dataclass(frozen=True, slots=True)
class Hit:
    """What answers at one address: the region, the offset in it, the path's flags."""

    mr: MemoryRegion
    offset: int
    readonly: bool
    nonvolatile: bool


@dataclass(frozen=True, slots=True)
class OracleRange:
    """One merged FlatRange, with the fields QEMU's FlatRange carries."""

    mr: MemoryRegion
    start: int
    size: int
    offset_in_region: int
    readonly: bool
    nonvolatile: bool
    romd_mode: bool
    dirty_log_mask: int

    def key(self) -> tuple[int, int, int, int, bool, bool, bool, int]:
        """Comparable form (the region by identity)."""
        return (
            id(self.mr),
            self.start,
            self.size,
            self.offset_in_region,
            self.readonly,
            self.nonvolatile,
            self.romd_mode,
            self.dirty_log_mask,
        )


@dataclass(slots=True)
class OracleView:
    """A FlatView: its resolved root, its ranges, the address spaces sharing it."""

    root: MemoryRegion | None
    ranges: list[OracleRange]
    address_spaces: list[AddressSpace] = field(default_factory=list)


def resolve(
    mr: MemoryRegion,
    addr: int,
    base: int = 0,
    readonly: bool = False,
    nonvolatile: bool = False,
    depth: int = 0,
) -> Hit | None:
    """The terminating region that answers at absolute ``addr`` inside ``mr``'s subtree.

    :param base: absolute address of offset 0 of ``mr``'s container (after alias shifts).
    """
    if depth > MAX_DEPTH:
        raise OracleLoop(f"deeper than {MAX_DEPTH} at {mr.label!r}")
    if not mr.enabled:
        return None
    start = base + mr.addr
    if not start <= addr < start + mr.size:
        # Outside this window: nothing below can answer either (clipping, §2.3 item 5).
        return None
    readonly = readonly or mr.readonly
    nonvolatile = nonvolatile or mr.nonvolatile
    if mr.alias is not None:
        # Offset alias_offset of the target lands on the alias's first byte; the
        # target's own addr is cancelled because it will add it again.
        shifted = start - mr.alias_offset - mr.alias.addr
        return resolve(mr.alias, addr, shifted, readonly, nonvolatile, depth + 1)
    for child in mr.subregions:
        hit = resolve(child, addr, start, readonly, nonvolatile, depth + 1)
        if hit is not None:
            return hit
    if mr.terminates:
        return Hit(mr, addr - start, readonly, nonvolatile)
    return None


def boundaries(root: MemoryRegion) -> list[int]:
    """Sorted addresses in ``[0, 2**64]`` where :func:`resolve`'s answer may change."""
    points = {0, TOP}

    def walk(mr: MemoryRegion, base: int, lo: int, hi: int, depth: int) -> None:
        # [lo, hi): the window left by the path so far; an empty one ends the walk
        # (as in QEMU, where an alias back into its own container may so terminate).
        if depth > MAX_DEPTH:
            raise OracleLoop(f"deeper than {MAX_DEPTH} at {mr.label!r}")
        if not mr.enabled:
            return
        start = base + mr.addr
        lo, hi = max(lo, start), min(hi, start + mr.size)
        if lo >= hi:
            return
        points.update((lo, hi))
        if mr.alias is not None:
            walk(mr.alias, start - mr.alias_offset - mr.alias.addr, lo, hi, depth + 1)
            return
        for child in mr.subregions:
            walk(child, start, lo, hi, depth + 1)

    walk(root, 0, 0, TOP, 0)
    return sorted(points)


def render_oracle(root: MemoryRegion | None) -> list[OracleRange]:
    """The merged FlatRanges of the view rendered from ``root``."""
    if root is None:
        return []
    out: list[OracleRange] = []
    points = boundaries(root)
    for lo, hi in pairwise(points):
        hit = resolve(root, lo)
        if hit is None:
            continue
        piece = OracleRange(
            hit.mr,
            lo,
            hi - lo,
            hit.offset,
            hit.readonly,
            hit.nonvolatile,
            hit.mr.romd_mode,
            hit.mr.dirty_log_mask,
        )
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.start + prev.size == piece.start
            and prev.mr is piece.mr
            and prev.offset_in_region + prev.size == piece.offset_in_region
            and (prev.readonly, prev.nonvolatile, prev.romd_mode, prev.dirty_log_mask)
            == (piece.readonly, piece.nonvolatile, piece.romd_mode, piece.dirty_log_mask)
        ):
            out[-1] = OracleRange(
                prev.mr,
                prev.start,
                prev.size + piece.size,
                prev.offset_in_region,
                prev.readonly,
                prev.nonvolatile,
                prev.romd_mode,
                prev.dirty_log_mask,
            )
        else:
            out.append(piece)
    return out


def flatview_root_oracle(mr: MemoryRegion | None) -> MemoryRegion | None:
    """The region a FlatView is rendered from (§3.1), ``None`` when nothing can render."""
    hops = 0
    while mr is not None and mr.enabled:
        hops += 1
        if hops > MAX_DEPTH:
            raise OracleLoop("flatview root: alias loop")
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


def render_machine_oracle(machine: Machine) -> list[OracleView]:
    """Every address space's FlatView, one per resolved root, in first-use order."""
    views: dict[int, OracleView] = {}
    for a in machine.address_spaces:
        root = flatview_root_oracle(a.root)
        view = views.get(id(root))
        if view is None:
            view = views[id(root)] = OracleView(root, render_oracle(root))
        view.address_spaces.append(a)
    return list(views.values())
