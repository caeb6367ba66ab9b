"""Topology updates between two snapshots of one VM, as QEMU's listeners would see them.

Two models rebuilt from two readings of the same QEMU share no objects, so QEMU's
identity test (``flatrange_equal`` compares region pointers) is replaced by equality
of what identifies a range across readings: its region's name and owner, start,
size, offset in the region and flags. Address spaces are matched by name, root name
and, where those repeat, their order of creation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from qmirror.core.model import AddressSpace, ASIdent, Machine
from qmirror.core.render import FlatRange, FlatView, flatview_root, render_machine
from qmirror.sim.listener import TopologyEvent, topology_diff


#: One address space across readings: its :data:`~qmirror.core.model.ASIdent` and its
#: index among address spaces with the same one.
ASKey = tuple[str, str, str | None, int]


def address_space_keys(machine: Machine) -> list[tuple[ASKey, AddressSpace]]:
    """A key for each address space that stays the same from one reading to the next."""
    seen: dict[ASIdent, int] = {}
    out: list[tuple[ASKey, AddressSpace]] = []
    for a in machine.address_spaces:
        base = a.ident()
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(((*base, n), a))
    return out


def same_by_value(a: FlatRange, b: FlatRange) -> bool:
    """``flatrange_equal`` across two readings: the region by name and owner."""
    return (
        a.start == b.start
        and a.size == b.size
        and a.offset_in_region == b.offset_in_region
        and a.readonly == b.readonly
        and a.nonvolatile == b.nonvolatile
        and a.romd_mode == b.romd_mode
        and a.mr.label == b.mr.label
        and a.mr.ownership == b.mr.ownership
        and a.mr.kind == b.mr.kind
    )


@dataclass(slots=True)
class Transition:
    """What one address space went through between two readings."""

    key: ASKey
    old: AddressSpace | None
    new: AddressSpace | None
    old_ranges: list[FlatRange]
    new_ranges: list[FlatRange]
    events: list[TopologyEvent] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(ev.kind != "nop" for ev in self.events)


def views_by_address_space(
    machine: Machine, views: Sequence[FlatView] | None = None
) -> dict[AddressSpace, FlatView]:
    """Map each address space to its rendered FlatView."""
    if views is None:
        views = render_machine(machine)
    by_root = {v.root: v for v in views}
    return {a: by_root[flatview_root(a.root)] for a in machine.address_spaces}


def transitions(
    old: Machine | None,
    new: Machine,
    old_views: Sequence[FlatView] | None = None,
    new_views: Sequence[FlatView] | None = None,
) -> list[Transition]:
    """Per address space (in the new reading's creation order, then those that went
    away), the events of QEMU's two topology passes from ``old`` to ``new``.

    An address space that appears is all ``add``; one that disappears is all ``del``.
    """
    new_map = views_by_address_space(new, new_views)
    old_keys = address_space_keys(old) if old is not None else []
    old_map = views_by_address_space(old, old_views) if old is not None else {}
    old_by_key = dict(old_keys)
    out: list[Transition] = []
    for key, a in address_space_keys(new):
        prev = old_by_key.pop(key, None)
        before = old_map[prev].ranges if prev is not None else []
        after = new_map[a].ranges
        out.append(
            Transition(
                key, prev, a, list(before), list(after), topology_diff(before, after, same_by_value)
            )
        )
    for key, prev in old_by_key.items():
        before = old_map[prev].ranges
        out.append(
            Transition(key, prev, None, list(before), [], topology_diff(before, [], same_by_value))
        )
    return out
