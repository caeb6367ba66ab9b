"""The listener machinery on its own: QEMU's two passes, listener order, ioeventfd diffs.

Every expected sequence here is derived by hand from docs/memory-semantics-notes.md §5.2–5.4 (the
pseudo-code of ``address_space_update_topology_pass`` and
``address_space_add_del_ioeventfds``, and the Forward/Reverse table).
"""

from __future__ import annotations

from typing import Any

from memhelpers import Recorder

from qmirror.core.model import AddressSpace, MemoryRegion, RegionKind
from qmirror.core.render import FlatRange
from qmirror.sim.listener import (
    IOEventFD,
    Listeners,
    flatview_ioeventfds,
    ioeventfd_diff,
    topology_diff,
)


def ram(name: str, size: int = 0x10000) -> MemoryRegion:
    return MemoryRegion(name, RegionKind.RAM, size)


def fr(
    mr: MemoryRegion,
    start: int,
    size: int,
    offset: int = 0,
    *,
    readonly: bool = False,
    mask: int = 0,
) -> FlatRange:
    return FlatRange(mr, start, size, offset, readonly, False, True, mask)


# -- topology_diff ---------------------------------------------------------------------


def test_changed_ranges_are_deleted_in_pass_one_and_added_in_pass_two() -> None:
    r, bios = ram("pc.ram", 0x8000000), ram("pc.bios", 0x10000)
    old = [
        fr(r, 0, 0xF0000),
        fr(bios, 0xF0000, 0x10000, readonly=True),
        fr(r, 0x100000, 0x7F00000, 0x100000),
    ]
    new = [fr(r, 0, 0x8000000)]
    kinds = [(e.kind, e.range.start, e.range.size) for e in topology_diff(old, new)]
    # Pass 1 walks the old list: none equals the new range, so all three go;
    # pass 2 adds the single merged range.
    assert kinds == [
        ("del", 0, 0xF0000),
        ("del", 0xF0000, 0x10000),
        ("del", 0x100000, 0x7F00000),
        ("add", 0, 0x8000000),
    ]


def test_unchanged_ranges_are_nops_and_mask_changes_are_log_events() -> None:
    r = ram("vga.vram", 0x20000)
    old = [fr(r, 0, 0x10000, mask=1), fr(r, 0x10000, 0x10000, 0x10000, mask=0)]
    new = [fr(r, 0, 0x10000, mask=0), fr(r, 0x10000, 0x10000, 0x10000, mask=5)]
    kinds = [(e.kind, e.range.start) for e in topology_diff(old, new)]
    # Same ranges (the mask is not compared): nop, then log_stop / log_start.
    assert kinds == [("nop", 0), ("log_stop", 0), ("nop", 0x10000), ("log_start", 0x10000)]


def test_a_range_at_the_same_start_that_differs_only_in_readonly_is_replaced() -> None:
    r = ram("pc.ram")
    old = [fr(r, 0, 0x1000)]
    new = [fr(r, 0, 0x1000, readonly=True)]
    assert [e.kind for e in topology_diff(old, new)] == ["del", "add"]


# -- listener order --------------------------------------------------------------------


def test_listener_lists_are_ascending_priority_fifo_and_directions_follow_qemu() -> None:
    log: list[tuple[Any, ...]] = []
    a = AddressSpace("memory", None)
    ls = Listeners()
    for tag, prio in (("x10", 10), ("y0", 0), ("z10", 10), ("w5", 5)):
        ls.register(Recorder(log, tag, prio), a)
    log.clear()
    ls.call_global("begin")
    ls.call_global("commit")
    ls.call_global("log_global_stop", reverse=True)
    r = ram("pc.ram")
    ls.deliver_topology(a, topology_diff([fr(r, 0, 0x1000)], [fr(r, 0, 0x1000, readonly=True)]))
    order = ["y0", "w5", "x10", "z10"]
    expected: list[tuple[Any, ...]] = [("begin", t) for t in order]
    expected += [("commit", t) for t in order]
    expected += [("log_global_stop", t) for t in reversed(order)]
    expected += [("region_del", t, "pc.ram", 0, 0x1000) for t in reversed(order)]
    expected += [("region_add", t, "pc.ram", 0, 0x1000) for t in order]
    assert log == expected


def test_region_callbacks_reach_only_the_listeners_of_their_address_space() -> None:
    log: list[tuple[Any, ...]] = []
    mem, io = AddressSpace("memory", None), AddressSpace("I/O", None)
    ls = Listeners()
    ls.register(Recorder(log, "m"), mem)
    ls.register(Recorder(log, "io"), io)
    ls.register(Recorder(log, "global"), None)
    log.clear()
    r = ram("pc.ram")
    ls.update([(mem, [], [fr(r, 0, 0x1000)]), (io, [], [])])
    assert log == [
        ("begin", "m"),
        ("begin", "io"),
        ("begin", "global"),
        ("region_add", "m", "pc.ram", 0, 0x1000),
        ("commit", "m"),
        ("commit", "io"),
        ("commit", "global"),
    ]


def test_update_skips_the_passes_of_an_address_space_whose_view_did_not_change() -> None:
    log: list[tuple[Any, ...]] = []
    a = AddressSpace("memory", None)
    ls = Listeners()
    ls.register(Recorder(log, "m"), a)
    log.clear()
    r = ram("pc.ram")
    ls.update([(a, None, [fr(r, 0, 0x1000)])])
    assert log == [("begin", "m"), ("commit", "m")]


def test_registration_replays_the_current_view_to_the_new_listener_only() -> None:
    log: list[tuple[Any, ...]] = []
    a = AddressSpace("memory", None)
    ls = Listeners()
    ls.register(Recorder(log, "old"), a)
    log.clear()
    vram, r = ram("vga.vram"), ram("pc.ram")
    current = [fr(r, 0, 0x1000), fr(vram, 0x1000, 0x1000, mask=1)]
    fds = [IOEventFD(0x3000, 0, False, 0, 1)]
    ls.register(Recorder(log, "new"), a, current, global_dirty_log=True)
    # 7.2 (listener_add_address_space): no ioeventfds in the replay.
    assert log == [
        ("begin", "new"),
        ("log_global_start", "new"),
        ("region_add", "new", "pc.ram", 0, 0x1000),
        ("region_add", "new", "vga.vram", 0x1000, 0x1000),
        ("log_start", "new", "vga.vram", 0x1000, 0x1000, 0, 1),
        ("commit", "new"),
    ]
    log.clear()
    ls.register(Recorder(log, "later"), a, current, fds)
    assert ("eventfd_add", "later", None, 0x3000, 0, False, 0, 1) in log


def test_unregistration_replays_the_removal_in_address_order() -> None:
    log: list[tuple[Any, ...]] = []
    a = AddressSpace("memory", None)
    ls = Listeners()
    rec = Recorder(log, "l")
    ls.register(rec, a)
    vram, r = ram("vga.vram"), ram("pc.ram")
    current = [fr(r, 0, 0x1000), fr(vram, 0x1000, 0x1000, mask=1)]
    log.clear()
    ls.unregister(rec, current)
    assert log == [
        ("begin", "l"),
        ("region_del", "l", "pc.ram", 0, 0x1000),
        ("log_stop", "l", "vga.vram", 0x1000, 0x1000, 1, 0),
        ("region_del", "l", "vga.vram", 0x1000, 0x1000),
        ("commit", "l"),
    ]
    assert not ls.listening_on(a)


# -- ioeventfds ------------------------------------------------------------------------


def test_ioeventfd_diff_merges_two_sorted_lists() -> None:
    a = IOEventFD(0x10, 2, True, 0, 1)
    b = IOEventFD(0x10, 2, True, 1, 2)
    c = IOEventFD(0x20, 0, False, 0, 3)
    d = IOEventFD(0x20, 2, False, 0, 4)
    got = [(k, fd.notifier) for k, fd in ioeventfd_diff([a, c], [a, b, d])]
    # a unchanged; b < c (start) → add b; c < d (size) → del c; then add d.
    assert got == [("add", 2), ("del", 3), ("add", 4)]


def test_ioeventfd_callbacks_delete_forward_and_add_in_reverse() -> None:
    log: list[tuple[Any, ...]] = []
    a = AddressSpace("memory", None)
    ls = Listeners()
    ls.register(Recorder(log, "p0", 0), a)
    ls.register(Recorder(log, "p10", 10), a)
    log.clear()
    old = [IOEventFD(0x10, 2, True, 7, 1)]
    new = [IOEventFD(0x20, 2, True, 8, 2)]
    ls.deliver_ioeventfds(a, old, new)
    assert [(e[0], e[1]) for e in log] == [
        ("eventfd_del", "p0"),
        ("eventfd_del", "p10"),
        ("eventfd_add", "p10"),
        ("eventfd_add", "p0"),
    ]


def test_flatview_ioeventfds_keeps_intersecting_fds_whole_and_per_mapping() -> None:
    notify = MemoryRegion("notify", RegionKind.IO, 0x1000)
    notify.ioeventfds = [
        IOEventFD(0x0, 0, False, 0, 1),
        IOEventFD(0x800, 2, False, 2, 3),
        IOEventFD(0xFFE, 4, False, 1, 2),
    ]
    # Seen twice: [0x5000, 0x5800) from offset 0, and [0x9800, 0xa000) from 0x800.
    ranges = [fr(notify, 0x5000, 0x800, 0), fr(notify, 0x9800, 0x800, 0x800)]
    got = [(fd.start, fd.size, fd.notifier) for fd in flatview_ioeventfds(ranges)]
    # First mapping (shift 0x5000): fd 1 is inside; fd 3 at 0x5800 is just past the
    # end; fd 2 at 0x5ffe is outside. Second mapping (shift 0x9000): fd 1 at 0x9000
    # is before it (a size-0 fd never reaches forward), fd 3 at 0x9800 is inside,
    # fd 2 at 0x9ffe is kept whole although its 4 bytes cross the range's end.
    assert got == [(0x5000, 0, 1), (0x9800, 2, 3), (0x9FFE, 4, 2)]


def test_flatview_ioeventfds_keeps_qemus_list_order_without_sorting() -> None:
    a = MemoryRegion("a", RegionKind.IO, 0x800)
    b = MemoryRegion("b", RegionKind.IO, 0x1000)
    a.ioeventfds = [IOEventFD(0x7FC, 2, False, 0, 1)]
    b.ioeventfds = [IOEventFD(0x7F0, 0x20, False, 0, 2)]
    ranges = [fr(a, 0x5000, 0x800, 0), fr(b, 0x5800, 0x800, 0x800)]
    # b's fd starts at 0x57f0, before its range, and reaches into it: kept, and
    # listed after a's (range order), as address_space_update_ioeventfds builds it.
    assert [fd.start for fd in flatview_ioeventfds(ranges)] == [0x57FC, 0x57F0]
