"""The memory API simulator: transactions, pending flags and callbacks in QEMU's order.

Machines are built in code. Every expected callback sequence is derived by hand from
the reference (§1.5 the pending-flag table, §5.1 the commit, §5.2 the listener table,
§5.3 the passes, §5.4 ioeventfds), never produced by the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest
from memhelpers import Recorder, small_pc

import qmirror.sim.memory as memory_module
from qmirror.core.model import SIZE_2_64, AddressSpace, IOEventFD
from qmirror.core.render import render
from qmirror.errors import ModelError
from qmirror.sim.listener import MemoryListener, Section
from qmirror.sim.memory import (
    DIRTY_MEMORY_CODE,
    DIRTY_MEMORY_MIGRATION,
    DIRTY_MEMORY_VGA,
    UINT64_MAX,
    MemorySystem,
    ioeventfd_equal,
)
from qmirror.text.tree import print_tree


def listen(
    mem: MemorySystem, a: AddressSpace | None, *specs: tuple[str, int]
) -> list[tuple[Any, ...]]:
    """Register recorders (tag, priority) on ``a``; return their log, emptied."""
    log: list[tuple[Any, ...]] = []
    for tag, prio in specs:
        mem.register(Recorder(log, tag, prio), a)
    log.clear()
    return log


def spans(mem: MemorySystem, a: AddressSpace) -> list[tuple[str, int, int, int, bool]]:
    return [
        (r.mr.label, r.start, r.size, r.offset_in_region, r.readonly)
        for r in mem.flatview(a).ranges
    ]


# -- the commit, in QEMU's order -------------------------------------------------------


def test_initial_view_of_the_small_pc() -> None:
    pc = small_pc()
    assert spans(pc.mem, pc.memory) == [
        ("pc.ram", 0, 0xF0000, 0, False),
        ("pc.bios", 0xF0000, 0x10000, 0, True),
        ("pc.ram", 0x100000, 0x7F00000, 0x100000, False),
    ]


def test_pam_reprogramming_with_two_listeners_follows_qemus_sequence() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.memory, ("p10", 10), ("p0", 0))
    with pc.mem.transaction():  # i440fx_update_memory_mappings: mode PCI -> RW RAM
        pc.mem.set_enabled(pc.pam_pci, False)
        pc.mem.set_enabled(pc.pam_ram, True)
    # The RAM alias joins both RAM neighbours into one range: every old range is
    # deleted (Reverse: 10 then 0), then the merged one added (Forward: 0 then 10).
    a, b, c = ("pc.ram", 0, 0xF0000), ("pc.bios", 0xF0000, 0x10000), ("pc.ram", 0x100000, 0x7F00000)
    assert log == [
        ("begin", "p0"),
        ("begin", "p10"),
        ("region_del", "p10", *a),
        ("region_del", "p0", *a),
        ("region_del", "p10", *b),
        ("region_del", "p0", *b),
        ("region_del", "p10", *c),
        ("region_del", "p0", *c),
        ("region_add", "p0", "pc.ram", 0, 0x8000000),
        ("region_add", "p10", "pc.ram", 0, 0x8000000),
        ("commit", "p0"),
        ("commit", "p10"),
    ]


def test_pam_read_only_mode_keeps_the_neighbours_as_nops() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.memory, ("p0", 0), ("p10", 10))
    with pc.mem.transaction():  # PCI -> read-only RAM (pam-rom)
        pc.mem.set_enabled(pc.pam_pci, False)
        pc.mem.set_enabled(pc.pam_rom, True)
    low, high = ("pc.ram", 0, 0xF0000), ("pc.ram", 0x100000, 0x7F00000)
    # The read-only piece does not merge with its writable neighbours.
    assert log == [
        ("begin", "p0"),
        ("begin", "p10"),
        ("region_del", "p10", "pc.bios", 0xF0000, 0x10000),
        ("region_del", "p0", "pc.bios", 0xF0000, 0x10000),
        ("region_nop", "p0", *low),
        ("region_nop", "p10", *low),
        ("region_add", "p0", "pc.ram", 0xF0000, 0x10000),
        ("region_add", "p10", "pc.ram", 0xF0000, 0x10000),
        ("region_nop", "p0", *high),
        ("region_nop", "p10", *high),
        ("commit", "p0"),
        ("commit", "p10"),
    ]
    assert spans(pc.mem, pc.memory)[1] == ("pc.ram", 0xF0000, 0x10000, 0xF0000, True)


def test_begin_and_commit_go_to_every_listener_and_passes_run_per_address_space() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.io_as, ("io0", 0))
    log2 = listen(pc.mem, pc.memory, ("m5", 5))
    watcher: list[tuple[Any, ...]] = []
    pc.mem.register(Recorder(watcher, "global", 7))
    watcher.clear()
    pc.mem.add_subregion(pc.io, 0x60, pc.mem.init_io("i8042-data", 1))
    # The global listener hears only begin/commit; the memory listener nops (its
    # view was re-rendered: a new object); on I/O the terminating `io` region now
    # fills around the port, so its one old range is replaced by three.
    assert watcher == [("begin", "global"), ("commit", "global")]
    assert log == [
        ("begin", "io0"),
        ("region_del", "io0", "io", 0, 0x10000),
        ("region_add", "io0", "io", 0, 0x60),
        ("region_add", "io0", "i8042-data", 0x60, 1),
        ("region_add", "io0", "io", 0x61, 0x10000 - 0x61),
        ("commit", "io0"),
    ]
    assert [e[0] for e in log2] == ["begin", "region_nop", "region_nop", "region_nop", "commit"]


def test_address_spaces_are_diffed_in_creation_order_and_see_old_views_until_switched() -> None:
    mem = MemorySystem()
    root = mem.init_container("root", 0x10000)
    first = mem.address_space_init(root, "first")
    second_root = mem.init_container("other", 0x10000)
    second = mem.address_space_init(second_root, "second")
    seen: list[tuple[str, int, int]] = []

    class Peeker(MemoryListener):
        def region_add(self, section: Section) -> None:
            seen.append(
                (
                    section.address_space.name,
                    len(mem.flatview(first).ranges),
                    len(mem.flatview(second).ranges),
                )
            )

    mem.register(Peeker(), first)
    mem.register(Peeker(), second)
    with mem.transaction():
        mem.add_subregion(second_root, 0, mem.init_ram("b", 0x1000))
        mem.add_subregion(root, 0, mem.init_ram("a", 0x1000))
    # "first" is diffed first, while its own view is still the old (empty) one;
    # when "second" is diffed, "first" has switched already.
    assert seen == [("first", 0, 0), ("second", 1, 0)]


def test_a_commit_with_only_ioeventfd_changes_has_no_begin_or_commit() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.io_as, ("a", 0), ("b", 10))
    port = pc.mem.init_io("virtio-pci", 0x20)
    pc.mem.add_subregion(pc.io, 0xC000, port)
    log.clear()
    pc.mem.add_eventfd(port, 0x10, 2, True, 0, notifier=1)
    # eventfd_add is Reverse: priority 10 first.
    assert log == [
        ("eventfd_add", "b", None, 0xC010, 2, True, 0, 1),
        ("eventfd_add", "a", None, 0xC010, 2, True, 0, 1),
    ]
    log.clear()
    pc.mem.del_eventfd(port, 0x10, 2, True, 0, notifier=1)
    assert log == [
        ("eventfd_del", "a", None, 0xC010, 2, True, 0, 1),
        ("eventfd_del", "b", None, 0xC010, 2, True, 0, 1),
    ]
    assert pc.mem.ioeventfds(pc.io_as) == []


def test_ioeventfds_follow_their_region_when_it_moves() -> None:
    pc = small_pc()
    port = pc.mem.init_io("virtio-pci", 0x20)
    pc.mem.add_subregion(pc.io, 0xC000, port)
    pc.mem.add_eventfd(port, 0x10, 2, True, 0, notifier=1)
    pc.mem.add_eventfd(port, 0x10, 2, True, 1, notifier=2)
    log = listen(pc.mem, pc.io_as, ("l", 0))
    pc.mem.set_address(port, 0xD000)  # a BAR reprogrammed
    # All three I/O ranges move (io below, the port, io above); the diff of the
    # AS's ioeventfds follows its passes, inside the same begin/commit.
    assert [e[0] for e in log] == [
        "begin",
        "region_del",
        "region_del",
        "region_del",
        "region_add",
        "region_add",
        "region_add",
        "eventfd_del",
        "eventfd_del",
        "eventfd_add",
        "eventfd_add",
        "commit",
    ]
    assert [(e[3], e[6]) for e in log if e[0].startswith("eventfd")] == [
        (0xC010, 0),
        (0xC010, 1),
        (0xD010, 0),
        (0xD010, 1),
    ]


# -- what sets a pending flag (docs/memory-semantics-notes.md §1.5) ----------------------------


def test_adding_to_a_disabled_container_or_a_disabled_subregion_updates_nothing() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.memory, ("l", 0))
    off = pc.mem.init_container("off", 0x1000)
    pc.mem.set_enabled(off, False)  # not mapped: a commit (set_enabled always sets it)
    assert [e[0] for e in log] == ["begin", "region_nop", "region_nop", "region_nop", "commit"]
    log.clear()
    pc.mem.add_subregion(pc.system, 0x1000000, off)
    hidden = pc.mem.init_ram("hidden", 0x1000)
    pc.mem.add_subregion(off, 0, hidden)
    assert not pc.mem.memory_update_pending
    assert log == []
    # The flags checked are the two regions' own: a child of an enabled container
    # inside a disabled one still makes a commit (which changes no range).
    inner = pc.mem.init_container("inner", 0x1000)
    pc.mem.add_subregion(off, 0, inner, priority=1)
    log.clear()
    pc.mem.add_subregion(inner, 0, pc.mem.init_ram("deep", 0x10))
    assert [e[0] for e in log] == ["begin", "region_nop", "region_nop", "region_nop", "commit"]


def test_attribute_changes_of_disabled_regions_update_nothing() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.memory, ("l", 0))
    rom = pc.mem.init_rom_device("flash", 0x1000)
    pc.mem.set_enabled(rom, False)
    log.clear()
    pc.mem.set_readonly(rom, True)
    pc.mem.set_nonvolatile(rom, True)
    pc.mem.set_romd(rom, False)
    pc.mem.set_log(rom, True)
    pc.mem.add_eventfd(rom, 0, 4, False, 0, notifier=9)
    alias = pc.mem.init_alias("window", rom, 0, 0x800)
    pc.mem.set_enabled(alias, False)
    log.clear()
    pc.mem.set_alias_offset(alias, 0x800)
    assert log == []
    assert not pc.mem.memory_update_pending and not pc.mem.ioeventfd_update_pending


def test_set_size_and_set_enabled_always_commit_when_they_change_something() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.memory, ("l", 0))
    loose = pc.mem.init_ram("loose", 0x1000)  # not mapped anywhere
    pc.mem.set_size(loose, 0x1000)  # no change: nothing
    assert log == []
    pc.mem.set_size(loose, UINT64_MAX)
    assert loose.size == SIZE_2_64
    assert [e[0] for e in log] == ["begin", "region_nop", "region_nop", "region_nop", "commit"]


def test_set_address_of_an_unmapped_region_only_records_it() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.memory, ("l", 0))
    loose = pc.mem.init_ram("loose", 0x1000)
    pc.mem.set_address(loose, 0x5000)
    assert loose.addr == 0x5000 and log == []


def test_set_address_re_adds_the_region_in_front_of_its_priority_class() -> None:
    mem = MemorySystem()
    root = mem.init_container("root", 0x10000)
    a, b = mem.init_ram("a", 0x1000), mem.init_ram("b", 0x1000)
    mem.add_subregion(root, 0, a)
    mem.add_subregion(root, 0x1000, b)
    mem.address_space_init(root, "memory")
    assert root.subregions == [b, a]
    mem.set_address(a, 0)  # same address: nothing
    assert root.subregions == [b, a]
    mem.set_address(a, 0x800)  # now a overlaps b and, being newest, wins
    assert root.subregions == [a, b]
    assert [(r.mr.label, r.start, r.size) for r in render(root)] == [
        ("a", 0x800, 0x1000),
        ("b", 0x1800, 0x800),
    ]


# -- transactions ----------------------------------------------------------------------


def test_nested_transactions_commit_once_at_the_outermost_commit() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.memory, ("l", 0))
    pc.mem.begin()
    pc.mem.begin()
    pc.mem.set_enabled(pc.pam_pci, False)
    pc.mem.commit()
    assert log == [] and pc.mem.memory_update_pending and pc.mem.depth == 1
    with pc.mem.transaction():
        pc.mem.set_enabled(pc.pam_ram, True)
    assert log == []
    pc.mem.commit()
    assert [e[0] for e in log] == [
        "begin",
        "region_del",
        "region_del",
        "region_del",
        "region_add",
        "commit",
    ]
    assert pc.mem.depth == 0 and not pc.mem.memory_update_pending


def test_commit_without_begin_is_an_error() -> None:
    with pytest.raises(ModelError, match="without a matching begin"):
        MemorySystem().commit()


def test_a_transaction_block_commits_even_when_it_raises() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.memory, ("l", 0))
    with pytest.raises(RuntimeError), pc.mem.transaction():
        pc.mem.set_enabled(pc.pam_pci, False)
        raise RuntimeError("device model bug")
    assert pc.mem.depth == 0 and log[0] == ("begin", "l")


def test_an_address_space_created_inside_a_transaction_renders_at_once() -> None:
    mem = MemorySystem()
    root = mem.init_container("root", 0x10000)
    mem.add_subregion(root, 0, mem.init_ram("r0", 0x1000))
    mem.add_subregion(root, 0x2000, mem.init_ram("r1", 0x1000))
    first = mem.address_space_init(root, "first")
    other = mem.init_container("other", 0x10000)
    with mem.transaction():
        mem.add_subregion(root, 0x4000, mem.init_ram("a", 0x1000))
        mem.add_subregion(other, 0, mem.init_ram("b", 0x1000))
        # Same root as "first": the table's view (from before the transaction) is
        # shared; a root without a view ("other" resolves to "b") is rendered now,
        # pending changes included.
        same = mem.address_space_init(root, "same")
        new = mem.address_space_init(other, "new")
        assert mem.flatview(same) is mem.flatview(first)
        assert [r.mr.label for r in mem.flatview(same).ranges] == ["r0", "r1"]
        assert [r.mr.label for r in mem.flatview(new).ranges] == ["b"]
    assert mem.flatview(same) is mem.flatview(first)
    assert [r.mr.label for r in mem.flatview(same).ranges] == ["r0", "r1", "a"]
    assert [a.name for a in mem.flatview(first).address_spaces] == ["first", "same"]


def test_address_space_destroy_unlinks_after_an_empty_transaction() -> None:
    pc = small_pc()
    extra = pc.mem.address_space_init(pc.system, "extra")
    assert pc.mem.flatview(extra) is pc.mem.flatview(pc.memory)
    log: list[tuple[Any, ...]] = []
    rec = Recorder(log, "l")
    pc.mem.register(rec, extra)
    with pytest.raises(ModelError, match="unregister"):
        pc.mem.address_space_destroy(extra)
    pc.mem.unregister(rec)
    log.clear()
    pc.mem.address_space_destroy(extra)
    assert [a.name for a in pc.mem.address_spaces] == ["memory", "I/O"]
    assert extra.root is pc.system
    assert log == []


def test_empty_and_disabled_roots_share_the_one_empty_view() -> None:
    mem = MemorySystem()
    bm = mem.init_container("bus master container", UINT64_MAX)
    alias = mem.init_alias("bus master", mem.init_container("system", UINT64_MAX), 0, UINT64_MAX)
    mem.set_enabled(alias, False)
    mem.add_subregion(bm, 0, alias)
    a = mem.address_space_init(bm, "PIIX3")
    b = mem.address_space_init(mem.init_container("nothing", 0x1000), "empty")
    view = mem.flatview(a)
    assert view is mem.flatview(b) and view.root is None
    mem.set_enabled(mem.init_ram("x", 1), True)  # no change: no commit
    mem.set_size(mem.init_ram("y", 1), 2)  # a commit: the empty view stays the same object
    assert mem.flatview(a) is view


# -- listeners and dirty logging -------------------------------------------------------


def test_registration_replays_the_current_view_and_unregistration_removes_it() -> None:
    pc = small_pc()
    log: list[tuple[Any, ...]] = []
    rec = Recorder(log, "late", 0)
    pc.mem.register(rec, pc.memory)
    assert log == [
        ("begin", "late"),
        ("region_add", "late", "pc.ram", 0, 0xF0000),
        ("region_add", "late", "pc.bios", 0xF0000, 0x10000),
        ("region_add", "late", "pc.ram", 0x100000, 0x7F00000),
        ("commit", "late"),
    ]
    log.clear()
    pc.mem.unregister(rec)
    assert log == [
        ("begin", "late"),
        ("region_del", "late", "pc.ram", 0, 0xF0000),
        ("region_del", "late", "pc.bios", 0xF0000, 0x10000),
        ("region_del", "late", "pc.ram", 0x100000, 0x7F00000),
        ("commit", "late"),
    ]
    again = Recorder(log, "again")
    pc.mem.register(again, pc.memory)
    with pytest.raises(ModelError, match="already registered"):
        pc.mem.register(again, pc.memory)


def test_vga_logging_counts_requests_and_reports_log_start_and_log_stop() -> None:
    mem = MemorySystem()
    system = mem.init_container("system", UINT64_MAX)
    vram = mem.init_ram("vga.vram", 0x10000)
    mem.add_subregion(system, 0xA0000, vram)
    memory = mem.address_space_init(system, "memory")
    log = listen(mem, memory, ("a", 0), ("b", 10))
    mem.set_log(vram, True)
    span = ("vga.vram", 0xA0000, 0x10000)
    assert log == [
        ("begin", "a"),
        ("begin", "b"),
        ("region_nop", "a", *span),
        ("region_nop", "b", *span),
        ("log_start", "a", *span, 0, DIRTY_MEMORY_VGA),
        ("log_start", "b", *span, 0, DIRTY_MEMORY_VGA),
        ("commit", "a"),
        ("commit", "b"),
    ]
    log.clear()
    mem.set_log(vram, True)  # a second user: no change
    mem.set_log(vram, False)
    assert log == []
    mem.set_log(vram, False)  # the last user: log_stop is Reverse
    assert [(e[0], e[1]) for e in log if e[0].startswith("log")] == [
        ("log_stop", "b"),
        ("log_stop", "a"),
    ]
    with pytest.raises(ModelError, match="without a matching True"):
        mem.set_log(vram, False)
    with pytest.raises(ModelError, match="VGA client"):
        mem.set_log(vram, True, DIRTY_MEMORY_MIGRATION)


def test_global_dirty_logging_starts_before_and_stops_after_its_forced_update() -> None:
    pc = small_pc()
    log = listen(pc.mem, pc.memory, ("a", 0), ("b", 10))
    pc.mem.log_global_start()
    kinds = [(e[0], e[1]) for e in log]
    assert kinds[:4] == [
        ("log_global_start", "a"),
        ("log_global_start", "b"),
        ("begin", "a"),
        ("begin", "b"),
    ]
    starts = [e for e in log if e[0] == "log_start" and e[1] == "a"]
    # Every range is migratable RAM or ROM: all three get MIGRATION.
    assert [(e[2], e[3], e[-2], e[-1]) for e in starts] == [
        ("pc.ram", 0, 0, DIRTY_MEMORY_MIGRATION),
        ("pc.bios", 0xF0000, 0, DIRTY_MEMORY_MIGRATION),
        ("pc.ram", 0x100000, 0, DIRTY_MEMORY_MIGRATION),
    ]
    late: list[tuple[Any, ...]] = []
    pc.mem.register(Recorder(late, "late"), pc.memory)
    assert late[:2] == [("begin", "late"), ("log_global_start", "late")]
    log.clear()
    pc.mem.log_global_stop()
    kinds = [(e[0], e[1]) for e in log]
    assert kinds[-2:] == [("log_global_stop", "b"), ("log_global_stop", "a")]
    assert ("commit", "b") in kinds[:-2]
    assert [e[1] for e in log if e[0] == "log_stop" and e[2] == "pc.bios"] == ["b", "a"]


def test_tcg_logs_code_for_everything_with_a_ram_block() -> None:
    mem = MemorySystem(tcg=True)
    system = mem.init_container("system", UINT64_MAX)
    mem.add_subregion(system, 0, mem.init_ram("ram", 0x1000))
    mem.add_subregion(system, 0x1000, mem.init_io("mmio", 0x1000))
    memory = mem.address_space_init(system, "memory")
    assert [(r.mr.label, r.dirty_log_mask) for r in mem.flatview(memory).ranges] == [
        ("ram", DIRTY_MEMORY_CODE),
        ("mmio", 0),
    ]


# -- ioeventfds ------------------------------------------------------------------------


def test_del_eventfd_with_size_zero_matches_any_entry_at_that_address() -> None:
    mem = MemorySystem()
    port = mem.init_io("port", 0x20)
    mem.add_eventfd(port, 0x10, 2, True, 2, notifier=2)
    mem.add_eventfd(port, 0x10, 2, True, 1, notifier=1)
    mem.add_eventfd(port, 0x04, 4, False, 0, notifier=3)
    # Kept sorted (start, size, match, data): 0x04 first, then data 1 before 2.
    assert [(fd.start, fd.data) for fd in port.ioeventfds] == [(4, 0), (0x10, 1), (0x10, 2)]
    mem.del_eventfd(port, 0x10, 0, False, 99, notifier=99)  # wildcard: the first at 0x10
    assert [(fd.start, fd.data) for fd in port.ioeventfds] == [(4, 0), (0x10, 2)]
    with pytest.raises(ModelError, match="no ioeventfd"):
        mem.del_eventfd(port, 0x10, 2, True, 7, notifier=2)
    assert ioeventfd_equal(IOEventFD(1, 2, False, 5, 1), IOEventFD(1, 2, False, 6, 1))
    assert not ioeventfd_equal(IOEventFD(1, 2, True, 5, 1), IOEventFD(1, 2, True, 6, 1))


def test_one_ioeventfd_commit_orders_dels_and_adds_by_the_sorted_merge() -> None:
    mem = MemorySystem()
    io = mem.init_io("io", 0x10000)
    port = mem.init_io("port", 0x100)
    mem.add_subregion(io, 0x100, port)
    a = mem.address_space_init(io, "I/O")
    mem.add_eventfd(port, 0x20, 2, True, 0, notifier=1)
    log = listen(mem, a, ("l", 0))
    with mem.transaction():
        mem.add_eventfd(port, 0x10, 2, True, 0, notifier=2)
        mem.del_eventfd(port, 0x20, 2, True, 0, notifier=1)
        mem.add_eventfd(port, 0x30, 2, True, 0, notifier=3)
    assert [(e[0], e[3]) for e in log] == [
        ("eventfd_add", 0x110),
        ("eventfd_del", 0x120),
        ("eventfd_add", 0x130),
    ]


# -- errors and conveniences -----------------------------------------------------------


def test_mapping_errors_are_model_errors() -> None:
    mem = MemorySystem()
    a, b = mem.init_container("a", 0x1000), mem.init_container("b", 0x1000)
    mem.add_subregion(a, 0, b)
    with pytest.raises(ModelError, match="already mapped"):
        mem.add_subregion(a, 0, b)
    with pytest.raises(ModelError, match="cycle"):
        mem.add_subregion(b, 0, a)
    with pytest.raises(ModelError, match="not a subregion"):
        mem.del_subregion(b, a)
    with pytest.raises(ModelError, match="not an alias"):
        mem.set_alias_offset(a, 1)
    with pytest.raises(ModelError, match="not a ROM device"):
        mem.set_romd(a, False)
    with pytest.raises(ModelError, match="not a 64-bit"):
        mem.init_ram("huge", SIZE_2_64)
    with pytest.raises(ModelError, match="not an address space"):
        mem.flatview(AddressSpace("stranger", a))


def test_the_machine_view_prints_like_qemu() -> None:
    pc = small_pc()
    text = print_tree(pc.mem.machine(), disabled=True)
    assert (
        "    00000000000f0000-00000000000fffff (prio 1, ram): alias pam-ram @pc.ram "
        "00000000000f0000-00000000000fffff [disabled]" in text
    )
    assert [v.root.label if v.root else None for v in pc.mem.views()] == ["system", "io"]


def test_from_machine_drives_an_existing_model() -> None:
    pc = small_pc()
    mem = MemorySystem.from_machine(pc.mem.machine())
    memory = mem.address_spaces[0]
    log = listen(mem, memory, ("l", 0))
    mem.set_enabled(pc.pam_pci, False)  # 0xf0000 falls through to ram-below-4g
    assert [e[0] for e in log] == [
        "begin",
        "region_del",
        "region_del",
        "region_del",
        "region_add",
        "commit",
    ]


def test_the_module_docstring_example_runs_as_described(capsys: pytest.CaptureFixture[str]) -> None:
    doc = memory_module.__doc__ or ""
    block = doc.split("and a listener::")[1].split(":class:")[0]
    code = "\n".join(line[4:] for line in block.splitlines())
    exec(compile(code, "qmirror.memory example", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "add pc.ram 0x0 0xf0000",
        "add isa-bios 0xf0000 0x10000",
        "add pc.ram 0x100000 0x7f00000",
        "del pc.ram 0x0 0xf0000",
        "del isa-bios 0xf0000 0x10000",
        "del pc.ram 0x100000 0x7f00000",
        "add pc.ram 0x0 0x8000000",
    ]
