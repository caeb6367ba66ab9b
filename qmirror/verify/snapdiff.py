"""What differs between two readings of a memory map: the region tree and the FlatViews. Pure.

Regions are matched across the readings by what identifies them there (two readings
share no objects): the names of the containers from the root down, the region's own
name, and its owner (``-o``). Where several regions share all of that (q35's thirteen
``pam-pci`` windows), they are paired in passes of decreasing strictness: identical
regions first, then those at the same address and size, then those aliasing the same
region, then the rest in tree order. What is left over was added or removed.

FlatViews are compared per address space with QEMU's own update rule
(:func:`qmirror.sim.topology.transitions`: a range that is not ``flatrange_equal`` to the
one at the same start in the other reading is deleted and the new one added). Address
spaces whose changes are the same are reported together.

:class:`~qmirror.verify.ignore.IgnoreRules` leave regions (by name) and fields out: a region
change only in ignored fields is no change; a range replaced by one that differs only
in ignored fields is no change either.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from qmirror.core.model import MASK64, Machine, MemoryRegion, kind_word
from qmirror.core.render import FlatRange, range_kind
from qmirror.core.units import hexs, human_size
from qmirror.sim.topology import transitions
from qmirror.text.grammar import format_owners, hex16
from qmirror.verify.ignore import IgnoreRules
from qmirror.verify.reading import Reading


SCHEMA = "qmirror.diff/1"
NO_IGNORES = IgnoreRules()


def owner_of(mr: MemoryRegion) -> str | None:
    return None if mr.ownership is None else format_owners(mr.ownership).strip()


def region_fields(mr: MemoryRegion) -> dict[str, Any]:
    """The compared fields of a region (names as in :mod:`qmirror.verify.ignore`)."""
    return {
        "type": kind_word(mr),
        "addr": mr.addr & MASK64,
        "size": mr.size,
        "priority": mr.priority,
        "enabled": mr.enabled,
        "alias": None if mr.alias is None else f"{mr.alias.label} @{mr.alias_offset & MASK64:#x}",
        "readonly": mr.readonly,
        "nonvolatile": mr.nonvolatile,
    }


def _key(mr: MemoryRegion) -> tuple[tuple[str, ...], str | None]:
    return tuple(m.label for m in mr.path()), owner_of(mr)


@dataclass(slots=True)
class RegionChange:
    """A region present in both readings whose fields differ: name → (old, new)."""

    old: MemoryRegion
    new: MemoryRegion
    fields: dict[str, tuple[Any, Any]]


@dataclass(slots=True)
class ViewChange:
    """Range changes shared by a group of address spaces."""

    address_spaces: list[str]
    removed: list[FlatRange]
    added: list[FlatRange]
    #: The address space exists only in the newer ("added") or the older ("removed")
    #: reading; ``""`` when it is in both.
    status: str = ""


@dataclass(slots=True)
class SnapshotDiff:
    """Everything that differs between two readings (``old`` → ``new``)."""

    added: list[MemoryRegion] = field(default_factory=list)
    removed: list[MemoryRegion] = field(default_factory=list)
    changed: list[RegionChange] = field(default_factory=list)
    views: list[ViewChange] = field(default_factory=list)
    #: How many differences the ignore rules left out.
    ignored: int = 0

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed or self.views)


def _pair(
    old: list[MemoryRegion],
    new: list[MemoryRegion],
    keys: Iterable[Callable[[MemoryRegion], Hashable]],
) -> tuple[list[tuple[MemoryRegion, MemoryRegion]], list[MemoryRegion], list[MemoryRegion]]:
    """Pair regions of one identity group, strictest key first; the rest stay unpaired."""
    pairs: list[tuple[MemoryRegion, MemoryRegion]] = []
    for key in keys:
        waiting: dict[Hashable, list[MemoryRegion]] = {}
        for mr in new:
            waiting.setdefault(key(mr), []).append(mr)
        left: list[MemoryRegion] = []
        for mr in old:
            bucket = waiting.get(key(mr))
            if bucket:
                pairs.append((mr, bucket.pop(0)))
            else:
                left.append(mr)
        taken = {b for _, b in pairs}
        old, new = left, [mr for mr in new if mr not in taken]
    return pairs, old, new


_PASSES: tuple[Callable[[MemoryRegion], Hashable], ...] = (
    lambda mr: tuple(region_fields(mr).items()),
    lambda mr: (mr.addr, mr.size, kind_word(mr), region_fields(mr)["alias"]),
    lambda mr: (kind_word(mr), region_fields(mr)["alias"]),
    lambda mr: 0,
)


def diff_trees(
    old: Machine, new: Machine, ignore: IgnoreRules = NO_IGNORES
) -> tuple[list[MemoryRegion], list[MemoryRegion], list[RegionChange], int]:
    """(added, removed, changed, ignored) regions from ``old`` to ``new``."""
    groups: dict[
        tuple[tuple[str, ...], str | None], tuple[list[MemoryRegion], list[MemoryRegion]]
    ] = {}
    order: list[tuple[tuple[str, ...], str | None]] = []
    for side, machine in ((0, old), (1, new)):
        for mr in machine.regions():
            key = _key(mr)
            if key not in groups:
                groups[key] = ([], [])
                order.append(key)
            groups[key][side].append(mr)
    added: list[MemoryRegion] = []
    removed: list[MemoryRegion] = []
    changed: list[RegionChange] = []
    ignored = 0
    for key in order:
        pairs, gone, came = _pair(*groups[key], _PASSES)
        found: list[RegionChange] = []
        for a, b in pairs:
            fa, fb = region_fields(a), region_fields(b)
            diff = {k: (fa[k], fb[k]) for k in fa if fa[k] != fb[k]}
            kept = {k: v for k, v in diff.items() if k not in ignore.fields}
            if kept:
                found.append(RegionChange(a, b, kept))
            elif diff:
                ignored += 1
        if ignore.region(key[0][-1]):
            ignored += len(gone) + len(came) + len(found)
            continue
        removed.extend(gone)
        added.extend(came)
        changed.extend(found)
    return added, removed, changed, ignored


def _range_fields(r: FlatRange) -> dict[str, Any]:
    return {
        "end": r.end,
        "type": range_kind(r),
        "name": r.mr.label,
        "offset": r.offset_in_region,
        "priority": r.mr.priority,
        "owner": owner_of(r.mr),
        "readonly": r.readonly,
        "nonvolatile": r.nonvolatile,
    }


def _filter_ranges(
    removed: list[FlatRange], added: list[FlatRange], ignore: IgnoreRules
) -> tuple[list[FlatRange], list[FlatRange], int]:
    """Drop ranges of ignored regions, and replacements that differ only in ignored fields."""
    if not ignore:
        return removed, added, 0
    before = len(removed) + len(added)
    removed = [r for r in removed if not ignore.region(r.mr.label)]
    added = [r for r in added if not ignore.region(r.mr.label)]
    if ignore.fields:
        by_start = {r.start: r for r in removed}
        same: set[int] = set()
        for r in added:
            o = by_start.get(r.start)
            if o is None:
                continue
            fo, fn = _range_fields(o), _range_fields(r)
            if all(fo[k] == fn[k] for k in fo if k not in ignore.fields):
                same.add(r.start)
        removed = [r for r in removed if r.start not in same]
        added = [r for r in added if r.start not in same]
    return removed, added, before - len(removed) - len(added)


def diff_views(
    old: Reading, new: Reading, ignore: IgnoreRules = NO_IGNORES
) -> tuple[list[ViewChange], int]:
    """Per group of address spaces, the ranges QEMU's update would delete and add."""
    grouped: dict[tuple[object, ...], ViewChange] = {}
    ignored = 0
    for t in transitions(old.machine, new.machine, old.views, new.views):
        removed = [ev.old for ev in t.events if ev.kind == "del" and ev.old is not None]
        added = [ev.new for ev in t.events if ev.kind == "add" and ev.new is not None]
        removed, added, dropped = _filter_ranges(removed, added, ignore)
        ignored += dropped
        status = "added" if t.old is None else "removed" if t.new is None else ""
        if not (removed or added or status):
            continue
        name = t.key[0]
        sig = (
            status,
            tuple((r.start, r.size, r.mr.label, r.offset_in_region) for r in removed),
            tuple((r.start, r.size, r.mr.label, r.offset_in_region) for r in added),
        )
        if sig in grouped:
            grouped[sig].address_spaces.append(name)
        else:
            grouped[sig] = ViewChange([name], removed, added, status)
    return list(grouped.values()), ignored


def diff_readings(old: Reading, new: Reading, ignore: IgnoreRules = NO_IGNORES) -> SnapshotDiff:
    """The whole difference from ``old`` to ``new``."""
    added, removed, changed, ignored_regions = diff_trees(old.machine, new.machine, ignore)
    views, ignored_ranges = diff_views(old, new, ignore)
    return SnapshotDiff(added, removed, changed, views, ignored_regions + ignored_ranges)


# -- presentation ---------------------------------------------------------------------


def region_path(mr: MemoryRegion) -> str:
    return " › ".join(m.label for m in mr.path())


def shown(name: str, value: Any) -> str:
    """A field value as people read it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name in ("addr", "offset", "end"):
        return f"{value:#x}"
    if name == "size":
        return f"{human_size(value)} ({value:#x})"
    return str(value)


def describe_region(mr: MemoryRegion) -> str:
    """``i/o 128 KiB @0xfebc0000 prio 1 → pc.ram @0x0 [disabled] owner:{...}``."""
    f = region_fields(mr)
    text = f"{f['type']} {human_size(mr.size)} @{f['addr']:#x}"
    if mr.priority:
        text += f" prio {mr.priority}"
    if f["alias"]:
        text += f" → {f['alias']}"
    if not mr.enabled:
        text += " [disabled]"
    owner = owner_of(mr)
    return text + (f" {owner}" if owner else "")


def range_line(r: FlatRange) -> str:
    """A range the way ``info mtree -f`` shows it (``start-last (type): name @offset``)."""
    off = f" @{hex16(r.offset_in_region)}" if r.offset_in_region else ""
    return f"{hex16(r.start)}-{hex16(r.end - 1)} ({range_kind(r)}): {r.mr.label}{off}"


def _region_json(mr: MemoryRegion) -> dict[str, Any]:
    f = region_fields(mr)
    return {
        "path": region_path(mr),
        "owner": owner_of(mr),
        "type": f["type"],
        "addr": hexs(f["addr"]),
        "size": hexs(mr.size),
        "priority": mr.priority,
        "enabled": mr.enabled,
        "alias": f["alias"],
    }


def _value_json(name: str, value: Any) -> Any:
    if name in ("addr", "size") and isinstance(value, int):
        return hexs(value)
    return value


def _range_json(r: FlatRange) -> dict[str, Any]:
    return {
        "start": hexs(r.start),
        "last": hexs(r.end - 1),
        "type": range_kind(r),
        "name": r.mr.label,
        "offset": hexs(r.offset_in_region),
        "owner": owner_of(r.mr),
    }


def to_json(d: SnapshotDiff, old: Reading, new: Reading, ignore: IgnoreRules) -> dict[str, Any]:
    """The ``qmirror.diff/1`` document."""
    return {
        "schema": SCHEMA,
        "result": "same" if d.same else "different",
        "old": {"label": old.label, "title": old.title},
        "new": {"label": new.label, "title": new.title},
        "regions": {
            "added": [_region_json(mr) for mr in d.added],
            "removed": [_region_json(mr) for mr in d.removed],
            "changed": [
                {
                    "path": region_path(c.new),
                    "owner": owner_of(c.new),
                    "addr": hexs(c.new.addr & MASK64),
                    "fields": {
                        k: {"old": _value_json(k, a), "new": _value_json(k, b)}
                        for k, (a, b) in c.fields.items()
                    },
                }
                for c in d.changed
            ],
        },
        "flatviews": [
            {
                "address_spaces": v.address_spaces,
                "status": v.status or "changed",
                "removed": [_range_json(r) for r in v.removed],
                "added": [_range_json(r) for r in v.added],
            }
            for v in d.views
        ],
        "ignored": {"rules": ignore.describe(), "differences": d.ignored},
    }
