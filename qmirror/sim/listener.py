"""MemoryListeners as QEMU calls them (reference §5.2–5.3).

A :class:`MemoryListener` subclass overrides the callbacks it cares about; the
others do nothing, as a NULL callback does in QEMU. :class:`Listeners` keeps the
global list and the per-AddressSpace lists in ascending priority (FIFO among equal
priorities) and calls them Forward (head to tail) or Reverse exactly as QEMU does:

============================  ======  =========
callback                      list    direction
============================  ======  =========
``begin``, ``commit``         global  Forward
``region_del``                AS      Reverse   (pass 1)
``region_nop``                AS      Forward   (pass 2)
``log_start``                 AS      Forward   (pass 2)
``log_stop``                  AS      Reverse   (pass 2)
``region_add``                AS      Forward   (pass 2)
``eventfd_del``               AS      Forward
``eventfd_add``               AS      Reverse
============================  ======  =========

:func:`topology_diff` is ``address_space_update_topology_pass`` run twice (deletions,
then additions). :meth:`Listeners.update` is the part of
``memory_region_transaction_commit`` that talks to listeners: global ``begin``; per
address space in creation order, the two passes and then the ioeventfd diff;
global ``commit``. The simulator (:mod:`qmirror.sim.memory`) and the live mirror both
drive it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from qmirror.core.model import AddressSpace, IOEventFD, MemoryRegion
from qmirror.core.render import FlatRange


__all__ = [
    "IOEventFD",
    "Listeners",
    "MemoryListener",
    "Section",
    "TopologyEvent",
    "flatview_ioeventfds",
    "ioeventfd_diff",
    "topology_diff",
]


@dataclass(frozen=True, slots=True)
class Section:
    """What a region callback receives (QEMU's ``MemoryRegionSection``).

    ``mr`` is ``None`` for ioeventfd callbacks, whose section carries only the range.
    """

    address_space: AddressSpace
    mr: MemoryRegion | None
    offset_within_region: int
    offset_within_address_space: int
    size: int
    readonly: bool = False
    nonvolatile: bool = False
    romd_mode: bool = True
    dirty_log_mask: int = 0

    @classmethod
    def of(cls, address_space: AddressSpace, r: FlatRange) -> Section:
        return cls(
            address_space,
            r.mr,
            r.offset_in_region,
            r.start,
            r.size,
            r.readonly,
            r.nonvolatile,
            r.romd_mode,
            r.dirty_log_mask,
        )

    @property
    def end(self) -> int:
        return self.offset_within_address_space + self.size


class MemoryListener:
    """Override the callbacks you need; the rest do nothing.

    :param priority: lower hears first on add, last on delete (KVM uses 10,
        most others 0).
    """

    name = "listener"

    def __init__(self, priority: int = 0) -> None:
        self.priority = priority

    def begin(self) -> None:
        """A topology update starts (every registered listener, any address space)."""

    def commit(self) -> None:
        """The topology update is complete."""

    def region_add(self, section: Section) -> None:
        """A range appeared (or changed: it was deleted first)."""

    def region_del(self, section: Section) -> None:
        """A range went away (or is about to reappear changed)."""

    def region_nop(self, section: Section) -> None:
        """A range is unchanged."""

    def log_start(self, section: Section, old: int, new: int) -> None:
        """Dirty-log bits were added to a range's mask."""

    def log_stop(self, section: Section, old: int, new: int) -> None:
        """Dirty-log bits were removed from a range's mask."""

    def eventfd_add(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        """An ioeventfd appeared in the address space."""

    def eventfd_del(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        """An ioeventfd went away."""

    def log_global_start(self) -> None:
        """Global dirty tracking (migration) starts: before the forced update."""

    def log_global_stop(self) -> None:
        """Global dirty tracking stopped: after the forced update."""


#: How two FlatRanges are "the same" for the diff: QEMU's ``flatrange_equal``
#: (same region object, start, size, offset, romd_mode, readonly, nonvolatile).
SameRange = Callable[[FlatRange, FlatRange], bool]


def flatrange_equal(a: FlatRange, b: FlatRange) -> bool:
    return a.same_as(b)


@dataclass(frozen=True, slots=True)
class TopologyEvent:
    """One step of the two passes: ``del``, ``nop``, ``log_start``, ``log_stop``, ``add``."""

    kind: str
    new: FlatRange | None
    old: FlatRange | None

    @property
    def range(self) -> FlatRange:
        r = self.new if self.new is not None else self.old
        assert r is not None
        return r


def topology_diff(
    old: Sequence[FlatRange], new: Sequence[FlatRange], same: SameRange = flatrange_equal
) -> list[TopologyEvent]:
    """The events QEMU's two topology passes produce for ``old`` → ``new``.

    Pass 1 (deletions) walks both sorted lists and deletes every old range that is
    not matched by an equal new range at the same start; pass 2 (additions) reports
    matched ranges as ``nop`` (plus ``log_start``/``log_stop`` when only the dirty
    mask changed) and every unmatched new range as ``add``. So all deletions come
    before all additions, and any change of a range is a delete plus an add.
    """
    events: list[TopologyEvent] = []
    for adding in (False, True):
        i = j = 0
        while i < len(old) or j < len(new):
            fo = old[i] if i < len(old) else None
            fn = new[j] if j < len(new) else None
            if fo is not None and (
                fn is None or fo.start < fn.start or (fo.start == fn.start and not same(fo, fn))
            ):
                if not adding:
                    events.append(TopologyEvent("del", None, fo))
                i += 1
            elif fo is not None and fn is not None and same(fo, fn):
                if adding:
                    events.append(TopologyEvent("nop", fn, fo))
                    if fn.dirty_log_mask & ~fo.dirty_log_mask:
                        events.append(TopologyEvent("log_start", fn, fo))
                    if fo.dirty_log_mask & ~fn.dirty_log_mask:
                        events.append(TopologyEvent("log_stop", fn, fo))
                i += 1
                j += 1
            else:
                if adding:
                    events.append(TopologyEvent("add", fn, None))
                j += 1
    return events


def ioeventfd_diff(
    old: Sequence[IOEventFD], new: Sequence[IOEventFD]
) -> Iterator[tuple[str, IOEventFD]]:
    """``address_space_add_del_ioeventfds``: a merge over both sorted lists."""
    i = j = 0
    while i < len(old) or j < len(new):
        if i < len(old) and (j == len(new) or old[i].sort_key() < new[j].sort_key()):
            yield "del", old[i]
            i += 1
        elif j < len(new) and (i == len(old) or new[j].sort_key() < old[i].sort_key()):
            yield "add", new[j]
            j += 1
        else:
            i += 1
            j += 1


def flatview_ioeventfds(ranges: Iterable[FlatRange]) -> list[IOEventFD]:
    """Every ioeventfd of the regions in a FlatView, moved to address-space coordinates.

    An ioeventfd is kept whole if it intersects the range it is seen through (QEMU
    does not clip it); a region visible twice registers it twice. The list comes in
    range order, then each region's own (sorted) order, and is not re-sorted:
    ``address_space_update_ioeventfds`` does not sort either, so the diff sees
    exactly what QEMU's sees.
    """
    out: list[IOEventFD] = []
    for r in ranges:
        for fd in r.mr.ioeventfds:
            start = fd.start + r.start - r.offset_in_region
            size = fd.size
            # addrrange_intersects: either range contains the other's start.
            if r.start <= start < r.end or start <= r.start < start + size:
                out.append(IOEventFD(start, size, fd.match_data, fd.data, fd.notifier))
    return out


@dataclass
class _Registered:
    listener: MemoryListener
    address_space: AddressSpace | None


@dataclass(eq=False)
class Listeners:
    """The global listener list and the per-address-space lists (reference §5.2)."""

    _global: list[_Registered] = field(default_factory=list)
    _by_as: dict[AddressSpace, list[_Registered]] = field(default_factory=dict)

    def register(
        self,
        listener: MemoryListener,
        address_space: AddressSpace | None,
        current: Sequence[FlatRange] = (),
        ioeventfds: Sequence[IOEventFD] = (),
        *,
        global_dirty_log: bool = False,
    ) -> None:
        """``memory_listener_register``: insert after equal priorities, then replay.

        The new listener alone hears ``begin``, ``log_global_start`` if global dirty
        tracking is on, ``region_add`` (and ``log_start``) for every range of the
        address space's ``current`` FlatView, then ``commit``. QEMU 7.2 does not replay
        ioeventfds; pass ``ioeventfds`` to get the behaviour of later versions, which
        announce the address space's ioeventfds after the ranges.
        """
        entry = _Registered(listener, address_space)
        _insert(self._global, entry)
        if address_space is not None:
            _insert(self._by_as.setdefault(address_space, []), entry)
            listener.begin()
            if global_dirty_log:
                listener.log_global_start()
            for r in current:
                s = Section.of(address_space, r)
                listener.region_add(s)
                if r.dirty_log_mask:
                    listener.log_start(s, 0, r.dirty_log_mask)
            for fd in ioeventfds:
                listener.eventfd_add(
                    _fd_section(address_space, fd), fd.match_data, fd.data, fd.notifier
                )
            listener.commit()

    def unregister(self, listener: MemoryListener, current: Sequence[FlatRange] = ()) -> None:
        """``memory_listener_unregister``: replay the removal of everything, then unlink.

        The ranges go in address order (``listener_del_address_space`` walks the view
        forward): ``log_stop`` then ``region_del`` for each.
        """
        entry = next((e for e in self._global if e.listener is listener), None)
        if entry is None:
            return
        a = entry.address_space
        if a is not None:
            listener.begin()
            for r in current:
                s = Section.of(a, r)
                if r.dirty_log_mask:
                    listener.log_stop(s, r.dirty_log_mask, 0)
                listener.region_del(s)
            listener.commit()
            self._by_as[a].remove(entry)
        self._global.remove(entry)

    def listening_on(self, address_space: AddressSpace) -> bool:
        return bool(self._by_as.get(address_space))

    def call_global(self, name: str, *, reverse: bool = False) -> None:
        for entry in reversed(self._global) if reverse else list(self._global):
            getattr(entry.listener, name)()

    def call(
        self, address_space: AddressSpace, name: str, *args: Any, reverse: bool = False
    ) -> None:
        entries = self._by_as.get(address_space, [])
        for entry in reversed(entries) if reverse else list(entries):
            getattr(entry.listener, name)(*args)

    def deliver_topology(
        self, address_space: AddressSpace, events: Iterable[TopologyEvent]
    ) -> None:
        """Call the region callbacks of one address space for a topology diff."""
        for ev in events:
            r = ev.range
            s = Section.of(address_space, r)
            if ev.kind == "del":
                self.call(address_space, "region_del", s, reverse=True)
            elif ev.kind == "add":
                self.call(address_space, "region_add", s)
            elif ev.kind == "nop":
                self.call(address_space, "region_nop", s)
            elif ev.kind == "log_start":
                assert ev.old is not None
                self.call(address_space, "log_start", s, ev.old.dirty_log_mask, r.dirty_log_mask)
            elif ev.kind == "log_stop":
                assert ev.old is not None
                self.call(
                    address_space,
                    "log_stop",
                    s,
                    ev.old.dirty_log_mask,
                    r.dirty_log_mask,
                    reverse=True,
                )

    def deliver_ioeventfds(
        self, address_space: AddressSpace, old: Sequence[IOEventFD], new: Sequence[IOEventFD]
    ) -> None:
        """``address_space_add_del_ioeventfds``: del Forward, add Reverse (sic)."""
        for kind, fd in ioeventfd_diff(old, new):
            s = _fd_section(address_space, fd)
            if kind == "del":
                self.call(address_space, "eventfd_del", s, fd.match_data, fd.data, fd.notifier)
            else:
                self.call(
                    address_space,
                    "eventfd_add",
                    s,
                    fd.match_data,
                    fd.data,
                    fd.notifier,
                    reverse=True,
                )

    def update(
        self,
        transitions: Sequence[tuple[AddressSpace, Sequence[FlatRange] | None, Sequence[FlatRange]]],
        *,
        same: SameRange = flatrange_equal,
        ioeventfds: Sequence[tuple[Sequence[IOEventFD], Sequence[IOEventFD]]] | None = None,
    ) -> None:
        """The listener side of one transaction commit with a memory update.

        :param transitions: per address space in creation order: (AS, old ranges or
            ``None`` if its FlatView did not change, new ranges). QEMU skips the diff
            for an AS whose FlatView object did not change.
        :param ioeventfds: per address space, (old, new) ioeventfd lists.
        """
        self.call_global("begin")
        for k, (a, old, new) in enumerate(transitions):
            if old is not None and self.listening_on(a):
                self.deliver_topology(a, topology_diff(old, new, same))
            if ioeventfds is not None and self.listening_on(a):
                self.deliver_ioeventfds(a, *ioeventfds[k])
        self.call_global("commit")


def _insert(entries: list[_Registered], entry: _Registered) -> None:
    """After the last entry of equal or lower priority (ascending, FIFO)."""
    keys = [e.listener.priority for e in entries]
    entries.insert(bisect.bisect_right(keys, entry.listener.priority), entry)


def _fd_section(address_space: AddressSpace, fd: IOEventFD) -> Section:
    return Section(address_space, None, 0, fd.start, fd.size)
