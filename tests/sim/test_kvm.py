"""KVM memory slots: QEMU 7.2's rules on hand-built machines, and real QEMU's own traces.

Unit tests build machines with :class:`~qmirror.sim.memory.MemorySystem`; the expected
calls are derived by hand from docs/memory-semantics-notes.md §5.6 (``kvm_set_phys_mem``,
``kvm_set_user_memory_region``, ``kvm_mem_flags``).

The real-QEMU tests run ``qemu-system-x86_64 -accel kvm -trace kvm_set_user_memory
-trace kvm_set_ioeventfd_mmio -trace kvm_set_ioeventfd_pio -D LOG`` (Debian's build
has the ``log`` trace backend) and compare what QEMU did with what the model
predicts from ``info mtree -o -D`` snapshots taken through the monitor:

* the final slot table, replayed from the whole trace, against :func:`predict_slots`
  of a snapshot: the same set of ``(as_id, gpa, size, flags)``;
* for a change made live (PAM writes through port I/O, a pc-dimm hotplug), the calls
  QEMU traced against :func:`slot_calls_between` the snapshots before and after.

What a snapshot can and cannot tell, as tested here:

* knowable: which slots exist, their extent and flags, and the sequence of calls of a
  change made in one transaction (deletions, then additions, in address order);
* slot numbers: not from snapshots (they depend on the VM's history), but given
  QEMU's table before the change (replayed from its trace) the first-free rule
  predicts them exactly;
* ``userspace_addr``: only its offset inside the region's RAMBlock (``ua`` minus that
  offset is the same for every slot of one region);
* the intermediate states of a change QEMU made in several transactions (board
  set-up, firmware boot), and the read-only-flip delete that QEMU does not trace.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from livehelpers import run_qmirror
from memhelpers import Recorder, small_pc

from qmirror.cli import main
from qmirror.core.model import Machine, MemoryRegion, RegionKind
from qmirror.core.render import FlatRange, render_machine
from qmirror.errors import ModelError, ParseError
from qmirror.live.launcher import QemuInstance
from qmirror.sim.kvm import (
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
    IoeventfdCall,
    Kvm,
    KvmConfig,
    KvmMemoryListener,
    KvmSlot,
    SlotCall,
    accel_suffix,
    final_slots,
    has_exact_slot,
    predict_slots,
    slot_calls,
    slot_calls_between,
)
from qmirror.sim.memory import UINT64_MAX, MemorySystem
from qmirror.text.flat import parse_flat
from qmirror.text.kvmtrace import TracedIoeventfd, TracedSlotCall, parse_trace
from qmirror.verify.check import check, load_tree


RO, LOG = KVM_MEM_READONLY, KVM_MEM_LOG_DIRTY_PAGES


def calls(kvm: Kvm) -> list[tuple[int, int, int, int, int]]:
    """``(slot, as_id, flags, gpa, size)`` of every call."""
    return [(c.slot, c.as_id, c.flags, c.gpa, c.size) for c in kvm.calls]


def machine_with(
    *regions: tuple[int, MemoryRegion], config: KvmConfig | None = None
) -> tuple[MemorySystem, MemoryRegion, Kvm]:
    """``system`` with the regions mapped at their addresses, AS ``memory``, KVM attached."""
    mem = MemorySystem()
    system = mem.init_container("system", UINT64_MAX)
    for addr, mr in regions:
        mem.add_subregion(system, addr, mr)
    mem.address_space_init(system, "memory")
    kvm = Kvm(config)
    kvm.attach(mem)
    return mem, system, kvm


# -- kvm_set_phys_mem on hand-built machines ---------------------------------------------


def test_ram_is_aligned_inward_to_the_host_page() -> None:
    mem = MemorySystem()
    ram = mem.init_ram("ram", 0x10000)
    part = mem.init_alias("part", ram, 0x800, 0x3000)
    tiny = mem.init_alias("tiny", ram, 0x8000, 0xFFF)
    page = mem.init_ram("page", 0x1FFF)
    _, _, kvm = machine_with((0x1800, part), (0x9000, tiny), (0x20000, page))
    # [0x1800, 0x4800) → [0x2000, 0x4000); a 0xfff-byte piece holds no whole page;
    # 0x1fff bytes from an aligned start keep one page.
    assert calls(kvm) == [(0, 0, 0, 0x2000, 0x2000), (1, 0, 0, 0x20000, 0x1000)]
    slot = kvm.slots()[0]
    assert slot.mr is ram and slot.offset_in_region == 0x1000


def test_mmio_iommu_and_containers_never_get_slots() -> None:
    mem = MemorySystem()
    _, _, kvm = machine_with(
        (0, mem.init_io("mmio", 0x1000)),
        (0x1000, mem.init_iommu("dmar", 0x1000)),
        (0x2000, mem.init_ram_device("bar", 0x1000)),
    )
    assert calls(kvm) == [(0, 0, 0, 0x2000, 0x1000)]


def test_read_only_comes_from_the_region_itself_never_from_an_alias() -> None:
    mem = MemorySystem()
    ram, bios = mem.init_ram("ram", 0x2000), mem.init_rom("bios", 0x1000)
    pam_rom = mem.init_alias("pam-rom", ram, 0x1000, 0x1000)
    mem.set_readonly(pam_rom, True)
    _, _, kvm = machine_with((0, pam_rom), (0x1000, bios))
    # pam-rom's range is read-only in the FlatView, but its slot is writable.
    assert calls(kvm) == [(0, 0, 0, 0, 0x1000), (1, 0, RO, 0x1000, 0x1000)]


def test_a_region_turning_read_only_is_deleted_and_re_created() -> None:
    mem = MemorySystem()
    ram = mem.init_ram("ram", 0x2000)
    mem2, _, kvm = machine_with((0, ram))
    kvm.calls.clear()
    mem2.set_readonly(ram, True)
    # region_del (slot 0 freed: size 0, flags 0), region_add (first free: 0 again).
    assert calls(kvm) == [(0, 0, 0, 0, 0), (0, 0, RO, 0, 0x2000)]
    assert all(c.traced for c in kvm.calls)


def test_a_read_only_flip_in_place_deletes_the_slot_first_without_tracing_it() -> None:
    mem = MemorySystem()
    ram = mem.init_ram("ram", 0x2000)
    window = mem.init_alias("window", ram, 0, 0x2000)
    mem.set_readonly(window, True)
    # (A second child keeps `system` the FlatView root: were `window` its only child,
    # QEMU would render from `ram` itself and the alias's read-only flag would vanish.)
    mem2, _, kvm = machine_with((0, window), (0x10000, mem.init_io("other", 0x1000)))
    kvm.calls.clear()
    # The range is read-only already through the alias: nothing changes in the
    # FlatView, so nothing reaches KVM and the slot keeps its stale flags...
    mem2.set_readonly(ram, True)
    assert kvm.calls == []
    # ...until a flag update rewrites them: READONLY changed, so KVM needs a delete
    # (size 0, the new flags) before the slot is set again. QEMU traces only the second.
    mem2.set_log(ram, True)
    assert [(c.slot, c.flags, c.size, c.traced) for c in kvm.calls] == [
        (0, RO | LOG, 0, False),
        (0, RO | LOG, 0x2000, True),
    ]


def test_dirty_logging_rewrites_the_flags_of_the_matching_slot() -> None:
    mem = MemorySystem()
    vram = mem.init_ram("vga.vram", 0x4000)
    mem2, _, kvm = machine_with((0xA0000, vram))
    kvm.calls.clear()
    mem2.set_log(vram, True)
    mem2.set_log(vram, False)
    assert calls(kvm) == [(0, 0, LOG, 0xA0000, 0x4000), (0, 0, 0, 0xA0000, 0x4000)]


def test_global_dirty_logging_logs_every_ram_slot() -> None:
    mem = MemorySystem()
    mem2, _, kvm = machine_with(
        (0, mem.init_ram("ram", 0x1000)), (0x1000, mem.init_rom("rom", 0x1000))
    )
    kvm.calls.clear()
    mem2.log_global_start()
    assert calls(kvm) == [(0, 0, LOG, 0, 0x1000), (1, 0, RO | LOG, 0x1000, 0x1000)]


def test_rom_devices_have_a_read_only_slot_only_in_romd_mode() -> None:
    mem = MemorySystem()
    flash = mem.init_rom_device("system.flash0", 0x4000)
    mem2, _, kvm = machine_with((0xFFFFC000, flash))
    assert calls(kvm) == [(0, 0, RO, 0xFFFFC000, 0x4000)]
    kvm.calls.clear()
    mem2.set_romd(flash, False)  # the guest writes a flash command: MMIO mode
    mem2.set_romd(flash, True)
    assert calls(kvm) == [(0, 0, 0, 0xFFFFC000, 0), (0, 0, RO, 0xFFFFC000, 0x4000)]
    _, _, without = machine_with(
        (0, MemorySystem().init_rom_device("f", 0x1000)), config=KvmConfig(readonly_mem=False)
    )
    assert without.calls == []


def test_slots_are_allocated_first_free() -> None:
    mem = MemorySystem()
    a, b, c = (mem.init_ram(n, 0x1000) for n in "abc")
    mem2, system, kvm = machine_with((0, a), (0x10000, b), (0x20000, c))
    mem2.del_subregion(system, a)
    mem2.add_subregion(system, 0x30000, mem2.init_ram("d", 0x1000))
    assert calls(kvm)[3:] == [(0, 0, 0, 0, 0), (0, 0, 0, 0x30000, 0x1000)]
    assert [(s.slot, s.mr.label if s.mr else None) for s in kvm.slots()] == [
        (0, "d"),
        (1, "b"),
        (2, "c"),
    ]


def test_a_maximum_slot_size_splits_sections_and_their_removal() -> None:
    mem = MemorySystem()
    ram = mem.init_ram("ram", 0x5000)
    config = KvmConfig(max_slot_size=0x2000)
    mem2, system, kvm = machine_with((0x100000, ram), config=config)
    assert calls(kvm) == [
        (0, 0, 0, 0x100000, 0x2000),
        (1, 0, 0, 0x102000, 0x2000),
        (2, 0, 0, 0x104000, 0x1000),
    ]
    assert [s.offset_in_region for s in kvm.slots()] == [0, 0x2000, 0x4000]
    kvm.calls.clear()
    mem2.del_subregion(system, ram)
    assert calls(kvm) == [(0, 0, 0, 0x100000, 0), (1, 0, 0, 0x102000, 0), (2, 0, 0, 0x104000, 0)]


def test_running_out_of_slots_is_an_error() -> None:
    mem = MemorySystem()
    with pytest.raises(ModelError, match="no free KVM slot"):
        machine_with(
            (0, mem.init_ram("a", 0x1000)),
            (0x2000, mem.init_ram("b", 0x1000)),
            config=KvmConfig(nr_slots=1),
        )


def test_kvm_smram_is_as_id_1_with_its_own_slots() -> None:
    mem = MemorySystem()
    system = mem.init_container("system", UINT64_MAX)
    ram = mem.init_ram("pc.ram", 0x100000)
    mem.add_subregion(system, 0, mem.init_alias("ram-below-4g", ram, 0, 0x100000))
    mem.add_subregion(system, 0xA0000, mem.init_io("vga-lowmem", 0x20000), priority=1)
    smram = mem.init_alias("smram-low", ram, 0xA0000, 0x20000)
    root = mem.init_container("mem-container-smram", UINT64_MAX)
    mem.add_subregion(root, 0, mem.init_alias("mem-smram", system, 0, UINT64_MAX))
    mem.add_subregion(root, 0xA0000, smram, priority=10)
    mem.address_space_init(system, "memory")
    mem.address_space_init(mem.init_io("io", 0x10000), "I/O")
    mem.address_space_init(root, "KVM-SMRAM")
    kvm = Kvm()
    kvm.attach(mem)
    # System memory has VGA's hole; in SMRAM the hole is RAM, and the three pieces
    # of pc.ram merge into one range: one slot in as_id 1, numbered from 0 again.
    assert [(c.slot_field, c.gpa, c.size) for c in kvm.calls] == [
        (0, 0, 0xA0000),
        (1, 0xC0000, 0x40000),
        (0x10000, 0, 0x100000),
    ]
    assert [s.key for s in kvm.slots()] == [
        (0, 0, 0xA0000, 0),
        (0, 0xC0000, 0x40000, 0),
        (1, 0, 0x100000, 0),
    ]
    assert [s.key for s in predict_slots(mem.machine())] == [s.key for s in kvm.slots()]


def test_ioeventfds_go_to_kvm_as_mmio_and_pio() -> None:
    mem = MemorySystem()
    system = mem.init_container("system", UINT64_MAX)
    notify = mem.init_io("virtio-pci-notify", 0x1000)
    mem.add_subregion(system, 0xFE003000, notify)
    io = mem.init_io("io", 0x10000)
    legacy = mem.init_io("virtio-pci", 0x20)
    mem.add_subregion(io, 0xC000, legacy)
    mem.address_space_init(system, "memory")
    mem.address_space_init(io, "I/O")
    kvm = Kvm()
    kvm.attach(mem)
    with mem.transaction():  # virtio_pci_ioeventfd_assign for queues 0 and 1
        for q in (0, 1):
            mem.add_eventfd(notify, 4 * q, 0, False, q, notifier=q)
            mem.add_eventfd(legacy, 16, 2, True, q, notifier=q)
    assert kvm.ioeventfd_calls == [
        IoeventfdCall("mmio", 0xFE003000, 0, 0, False, True, 0),
        IoeventfdCall("mmio", 0xFE003004, 0, 1, False, True, 1),
        IoeventfdCall("pio", 0xC010, 2, 0, True, True, 0),
        IoeventfdCall("pio", 0xC010, 2, 1, True, True, 1),
    ]
    no_fds = Kvm(KvmConfig(eventfds=False))
    mem.unregister(kvm.memory)
    mem.unregister(kvm.io)
    no_fds.attach(mem)
    mem.del_eventfd(notify, 0, 0, False, 0, notifier=0)
    assert no_fds.ioeventfd_calls == []


def test_kvm_hears_a_pam_change_after_priority_0_listeners_and_deletes_before_them() -> None:
    pc = small_pc()
    log: list[tuple[Any, ...]] = []

    class Logged(KvmMemoryListener):
        def region_add(self, section: Any) -> None:
            log.append(("kvm add", section.offset_within_address_space))
            super().region_add(section)

        def region_del(self, section: Any) -> None:
            log.append(("kvm del", section.offset_within_address_space))
            super().region_del(section)

    kvm = Logged()
    pc.mem.register(kvm, pc.memory)
    pc.mem.register(Recorder(log, "p0", 0), pc.memory)
    log.clear()
    kvm.calls.clear()
    with pc.mem.transaction():
        pc.mem.set_enabled(pc.pam_pci, False)
        pc.mem.set_enabled(pc.pam_ram, True)
    assert [e[:2] for e in log] == [
        ("begin", "p0"),
        ("kvm del", 0),
        ("region_del", "p0"),
        ("kvm del", 0xF0000),
        ("region_del", "p0"),
        ("kvm del", 0x100000),
        ("region_del", "p0"),
        ("region_add", "p0"),
        ("kvm add", 0),
        ("commit", "p0"),
    ]
    assert [(c.slot, c.flags, c.gpa, c.size) for c in kvm.calls] == [
        (0, 0, 0, 0),
        (1, 0, 0xF0000, 0),
        (2, 0, 0x100000, 0),
        (0, 0, 0, 0x8000000),
    ]


# -- the KVM suffix and snapshots ------------------------------------------------------


def test_has_exact_slot_follows_alignment_and_the_maximum_slot_size() -> None:
    ram = MemoryRegion("ram", RegionKind.RAM, 0x10000)
    io = MemoryRegion("io", RegionKind.IO, 0x10000)

    def r(mr: MemoryRegion, start: int, size: int) -> FlatRange:
        return FlatRange(mr, start, size, 0, False, False, True, 0)

    assert has_exact_slot(r(ram, 0x1000, 0x2000))
    assert not has_exact_slot(r(ram, 0x1800, 0x2000))
    assert not has_exact_slot(r(ram, 0x1000, 0x2800))
    assert not has_exact_slot(r(io, 0x1000, 0x1000))
    # QEMU looks up min(max, size) bytes: the first chunk of a split range.
    assert has_exact_slot(r(ram, 0x1000, 0x2800), max_slot_size=0x1000)


REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "qemu-7.2" / "x86_64"
KVM_FIXTURES = sorted(
    d
    for d in FIXTURES.iterdir()
    if (d / "meta.json").exists()
    and "kvm" in json.loads((d / "meta.json").read_text()).get("qemu_args", [])
)


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


@pytest.mark.parametrize("directory", KVM_FIXTURES, ids=[d.name for d in KVM_FIXTURES])
def test_predicted_slots_are_the_ranges_qemu_marks_kvm(directory: Path) -> None:
    tree, flat = read(directory / "info-mtree-o-D.txt"), read(directory / "info-mtree-f-o.txt")
    machine = load_tree(tree).machine  # rule table only: no inference from QEMU's -f
    slots = predict_slots(machine)
    marked = {
        (r.start, r.end - r.start + 1) for v in parse_flat(flat).views for r in v.ranges if r.accel
    }
    # Every slot of these machines is a whole FlatRange, so the two sets are equal.
    assert {(s.gpa, s.size) for s in slots} == marked
    assert len(slots) >= 4
    # And our own suffix (check.py) says the same range by range.
    result = check(tree, flat, accel="kvm")
    ours = {
        (r.start, r.size)
        for v in render_machine(result.machine)
        for r in v.ranges
        if accel_suffix(v, r)
    }
    assert ours == marked


def test_slots_cli_prints_the_table_as_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    directory = FIXTURES / "q35-kvm"
    flat = read(directory / "info-mtree-f-o.txt")
    marked = sorted(
        (r.start, r.end - r.start + 1) for v in parse_flat(flat).views for r in v.ranges if r.accel
    )
    assert main(["slots", "--tree", str(directory / "info-mtree-o-D.txt"), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(int(s["gpa"], 16), int(s["size"], 16)) for s in doc["slots"]] == marked
    assert all(s["gpa"].startswith("0x") and len(s["gpa"]) == 18 for s in doc["slots"])
    bios = [s for s in doc["slots"] if s["region"] == "pc.bios"]
    # pc.bios at 4 GiB - 256 KiB, and its last 128 KiB at 0xe0000 (isa-bios): a ROM.
    assert [(s["gpa"], s["flags"]) for s in bios] == [
        ("0x00000000000e0000", "0x2"),
        ("0x00000000fffc0000", "0x2"),
    ]
    assert doc["address_spaces"] == [{"as_id": 0, "name": "memory"}]
    assert main(["slots", str(directory)]) == 0
    text = capsys.readouterr().out
    assert f"{len(marked)} slots" in text
    assert "0x2 READONLY" in text and "pc.bios @0000000000000000" in text
    assert main(["slots"]) == 2
    assert (
        main(
            ["slots", "--tree", str(directory / "info-mtree-o-D.txt"), "--max-slot-size", "0x1800"]
        )
        == 2
    )


# -- QEMU's trace log ------------------------------------------------------------------


def test_trace_lines_of_72_and_later_formats_parse() -> None:
    text = "\n".join(
        [
            "kvm_set_user_memory Slot#3 flags=0x2 gpa=0xe0000 size=0x20000 ua=0x7f5b9cc20000 ret=0",
            "12345@1700000000.123456:kvm_set_user_memory Slot#65537 flags=0x1 gpa=0xa0000 "
            "size=0x0 ua=0x7f00 ret=0",
            "kvm_set_user_memory AddrSpace#1 Slot#2 flags=0x0 gpa=0x0 size=0x1000 ua=0x1 ret=-22",
            "kvm_set_ioeventfd_mmio fd: 14 @0xfe003000 val=0x0 assign: 1 size: 0 match: 0",
            "kvm_set_ioeventfd_pio fd: 15 @0xc010 val=0x1 assign: 0 size: 2 match: 1",
            "qemu-system-x86_64: some warning",
            "kvm_slots_grow 32 -> 64",
        ]
    )
    events = parse_trace(text)
    assert events == [
        TracedSlotCall(0, 3, 2, 0xE0000, 0x20000, 0x7F5B9CC20000, 0, 1),
        TracedSlotCall(1, 1, 1, 0xA0000, 0, 0x7F00, 0, 2),
        TracedSlotCall(1, 2, 0, 0, 0x1000, 1, -22, 3),
        TracedIoeventfd("mmio", 14, 0xFE003000, 0, True, 0, False, 4),
        TracedIoeventfd("pio", 15, 0xC010, 1, False, 2, True, 5),
    ]


def test_trace_lines_with_guest_memfd_fields_parse() -> None:
    """The line as QEMU 10.0 (Debian trixie) wrote it in tests/test_matrix.py's run."""
    events = parse_trace(
        "kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x0 gpa=0x0 "
        "size=0x8000000 ua=0x7f0547e00000 guest_memfd=-1 "
        "guest_memfd_offset=0x0 ret=0\n"
    )
    assert events == [TracedSlotCall(0, 0, 0, 0, 0x8000000, 0x7F0547E00000, 0, 1)]


def test_a_malformed_trace_line_says_where() -> None:
    with pytest.raises(ParseError) as info:
        parse_trace("x\nkvm_set_user_memory Slot#1 flags=0xzz gpa=0x0", filename="LOG")
    err = info.value
    assert (err.line, err.column) == (2, 27)
    assert str(err).startswith("LOG:2:27: not a kvm_set_user_memory trace line")


def test_final_slots_replays_creations_and_deletions() -> None:
    events = parse_trace(
        "\n".join(
            [
                "kvm_set_user_memory Slot#0 flags=0x0 gpa=0x0 size=0x8000000 ua=0x1 ret=0",
                "kvm_set_user_memory Slot#1 flags=0x2 gpa=0xfffc0000 size=0x40000 ua=0x2 ret=0",
                "kvm_set_user_memory Slot#0 flags=0x0 gpa=0x0 size=0x0 ua=0x1 ret=0",
                "kvm_set_user_memory Slot#0 flags=0x0 gpa=0x0 size=0xc0000 ua=0x1 ret=0",
                "kvm_set_user_memory Slot#2 flags=0x0 gpa=0x100000 size=0x1000 ua=0x3 ret=-1",
                "kvm_set_user_memory Slot#65536 flags=0x0 gpa=0x0 size=0x1000 ua=0x1 ret=0",
            ]
        )
    )
    assert [s.key for s in final_slots(events)] == [
        (0, 0, 0xC0000, 0),
        (0, 0xFFFC0000, 0x40000, 2),
        (1, 0, 0x1000, 0),
    ]


# -- real QEMU under KVM ---------------------------------------------------------------


TRACE_ARGS = (
    "-trace",
    "kvm_set_user_memory",
    "-trace",
    "kvm_set_ioeventfd_mmio",
    "-trace",
    "kvm_set_ioeventfd_pio",
)


class Traced:
    """A QEMU under KVM with its trace log: snapshots and the calls since a mark."""

    def __init__(self, vm: QemuInstance, log: Path) -> None:
        self.vm = vm
        self.log = log

    def events(self) -> list[TracedSlotCall | TracedIoeventfd]:
        return parse_trace(self.log.read_text(), filename=str(self.log))

    async def snapshot(self) -> Machine:
        """The model of this moment, from ``info mtree -o -D`` and the rule table only."""
        text = await self.vm.monitor.info_mtree(owners=True, disabled=True)
        return load_tree(text).machine

    async def hmp(self, *commands: str) -> None:
        for c in commands:
            await self.vm.monitor.hmp(c)


@asynccontextmanager
async def traced(
    binary: str, directory: Path, args: Sequence[str], boot: int | None = None
) -> AsyncIterator[Traced]:
    """QEMU under KVM, tracing slot and ioeventfd calls; paused (``-S``).

    :param boot: let the guest run until the trace shows this many slots (the
        firmware at work), or 20 s, then stop it.
    """
    log = directory / "trace.log"
    async with QemuInstance(
        [*args, "-accel", "kvm", *TRACE_ARGS, "-D", str(log)], binary=binary
    ) as vm:
        t = Traced(vm, log)
        if boot is not None:
            await vm.monitor.execute("cont")
            for _ in range(100):  # up to 20 s; the log is a file: poll it
                if len(final_slots(t.events())) >= boot:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
            await vm.monitor.execute("stop")
        yield t


CONFIGS: list[tuple[str, list[str], int | None]] = [
    ("pc", ["-machine", "pc"], None),
    ("q35", ["-machine", "q35,smm=off"], None),
    ("q35-6g", ["-machine", "q35,smm=off", "-m", "6G"], None),
    (
        "pc-dimm",
        [
            "-machine",
            "pc",
            "-m",
            "1G,slots=2,maxmem=4G",
            "-object",
            "memory-backend-ram,id=m1,size=512M",
            "-device",
            "pc-dimm,id=d1,memdev=m1",
        ],
        None,
    ),
    # SeaBIOS runs (no disk: it ends at "no bootable device") until it has made
    # the PAM areas it shadowed read-only (more than 7 slots) and mapped VGA's
    # logged VRAM BAR.
    ("pc-booted", ["-machine", "pc", "-nic", "none"], 8),
    ("q35-booted", ["-machine", "q35,smm=off", "-nic", "none"], 8),
]
CONFIG_PARAMS = [
    pytest.param(*c, id=c[0], marks=[pytest.mark.slow] if c[2] else []) for c in CONFIGS
]


def ua_bases(predicted: Sequence[KvmSlot], traced: Sequence[TracedSlotCall]) -> dict[int, set[int]]:
    """Per region (by identity): ``userspace_addr - offset_in_region`` of its slots."""
    last: dict[tuple[int, int, int, int], int] = {}
    for c in traced:
        if c.size:
            last[c.key] = c.userspace_addr
    out: dict[int, set[int]] = {}
    for s in predicted:
        assert s.mr is not None and s.offset_in_region is not None
        out.setdefault(id(s.mr), set()).add(last[s.key] - s.offset_in_region)
    return out


@pytest.mark.qemu
@pytest.mark.kvm
@pytest.mark.parametrize(("name", "args", "boot"), CONFIG_PARAMS)
async def test_the_slot_table_of_a_snapshot_is_qemus(
    qemu_binary: str, kvm: None, tmp_path: Path, name: str, args: list[str], boot: int | None
) -> None:
    async with traced(qemu_binary, tmp_path, args, boot) as vm:
        machine = await vm.snapshot()
        events = vm.events()
    predicted = predict_slots(machine)
    qemu = final_slots(events)
    assert sorted(s.key for s in predicted) == sorted(s.key for s in qemu)
    assert len(qemu) >= (boot or 5)
    if boot is not None:
        # The firmware left read-only PAM areas (RAM behind pam-rom: writable slots)
        # and VGA logging its VRAM.
        assert any(s.flags == LOG for s in qemu)
    # userspace_addr is only known up to each region's host address.
    for bases in ua_bases(predicted, slot_calls(events)).values():
        assert len(bases) == 1


#: i440FX PAM registers 0x59..0x5f (dword 0x58); Q35's MCH has them at 0x90..0x96.
PC_CHANGES: list[tuple[str, list[str]]] = [
    ("BIOS area RAM read-write", ["o /w 0xcf8 0x80000058", "o /b 0xcfd 0x30"]),
    ("C0000-C7FFF RAM read-only", ["o /w 0xcf8 0x80000058", "o /b 0xcfe 0x11"]),
    ("C0000-C7FFF RAM read-write", ["o /w 0xcf8 0x80000058", "o /b 0xcfe 0x33"]),
    ("C0000-C7FFF back to PCI", ["o /w 0xcf8 0x80000058", "o /b 0xcfe 0x00"]),
]
Q35_CHANGES: list[tuple[str, list[str]]] = [
    ("BIOS area RAM read-write", ["o /w 0xcf8 0x80000090", "o /b 0xcfc 0x30"]),
    ("C0000-C7FFF RAM read-only", ["o /w 0xcf8 0x80000090", "o /b 0xcfd 0x11"]),
]
HOTPLUG = "pc-dimm hotplug"


def as_tuple(c: SlotCall | TracedSlotCall) -> tuple[int, int, int, int, int]:
    return (c.slot, c.as_id, c.flags, c.gpa, c.size)


@pytest.mark.qemu
@pytest.mark.kvm
@pytest.mark.parametrize(
    ("machine", "changes"), [("pc", PC_CHANGES), ("q35,smm=off", Q35_CHANGES)], ids=["pc", "q35"]
)
async def test_live_changes_make_the_calls_the_listener_predicts(
    qemu_binary: str, kvm: None, tmp_path: Path, machine: str, changes: list[tuple[str, list[str]]]
) -> None:
    args = ["-machine", machine, "-m", "1G,slots=2,maxmem=4G"]
    matched = 0
    async with traced(qemu_binary, tmp_path, args) as vm:
        for label, commands in [*changes, (HOTPLUG, [])]:
            before = await vm.snapshot()
            history = vm.events()
            if commands:
                await vm.hmp(*commands)
            else:
                await vm.vm.monitor.execute(
                    "object-add", {"qom-type": "memory-backend-ram", "id": "hot", "size": 256 << 20}
                )
                await vm.vm.monitor.execute(
                    "device_add", {"driver": "pc-dimm", "id": "hot-dimm", "memdev": "hot"}
                )
            after = await vm.snapshot()
            qemu = slot_calls(vm.events()[len(history) :])
            assert qemu, f"{label}: QEMU made no slot calls"
            # From the snapshots alone: the calls without their slot numbers.
            ours = [c for c in slot_calls_between(before, after) if c.traced]
            assert [c.key for c in ours] == [c.key for c in qemu], label
            # Given QEMU's table before the change, the slot numbers too.
            seeded = slot_calls_between(before, after, before=final_slots(history))
            assert [as_tuple(c) for c in seeded if c.traced] == [as_tuple(c) for c in qemu], label
            matched += len(qemu)
    assert matched >= 6


@pytest.mark.qemu
@pytest.mark.kvm
async def test_virtio_ioeventfds_are_registered_as_the_model_predicts(
    qemu_binary: str, kvm: None, tmp_path: Path
) -> None:
    """A legacy-capable virtio-net on pc, driven from the host through port I/O.

    ``info mtree`` does not show ioeventfds, so the model gets them the way QEMU's
    device code adds them (hw/virtio/virtio-pci.c ``virtio_pci_ioeventfd_assign``,
    7.2): when the driver sets DRIVER_OK, for each queue n (virtio-net without
    multiqueue has 3: rx, tx, ctrl) one on the modern notify region at 4·n (size 0:
    "any length" under KVM, no data match) and one on the legacy I/O BAR at 16 (size
    2, data n), in one transaction. The addresses, the order and the sizes the
    listeners see then come from the snapshot and the model, and are compared with
    QEMU's kvm_set_ioeventfd_* trace. The fds themselves are QEMU's (only their
    pairing is checked).
    """
    args = ["-machine", "pc", "-nodefaults", "-device", "virtio-net-pci,id=n1,addr=0x5"]
    async with traced(qemu_binary, tmp_path, args) as vm:
        # BAR0 (I/O) at 0xc000, BAR4 (64-bit memory) at 0xfe000000, then I/O and
        # memory decoding on (config space of 00:05.0).
        await vm.hmp(
            "o /w 0xcf8 0x80002810",
            "o /w 0xcfc 0xc000",
            "o /w 0xcf8 0x80002820",
            "o /w 0xcfc 0xfe000000",
            "o /w 0xcf8 0x80002824",
            "o /w 0xcfc 0x0",
            "o /w 0xcf8 0x80002804",
            "o /h 0xcfc 0x0003",
        )
        machine = await vm.snapshot()
        start = len(vm.events())
        await vm.hmp("o /b 0xc012 0x4")  # legacy VIRTIO_PCI_STATUS = DRIVER_OK
        middle = len(vm.events())
        await vm.hmp("o /b 0xc012 0x0")  # reset: the ioeventfds go
        events = vm.events()
    added = [e for e in events[start:middle] if isinstance(e, TracedIoeventfd)]
    removed = [e for e in events[middle:] if isinstance(e, TracedIoeventfd)]

    # The tree prints address spaces in hash order (G9); QEMU creates "memory" and
    # then "I/O" first of all (softmmu/physmem.c memory_map_init).
    first = {"memory": 0, "I/O": 1}
    machine.address_spaces.sort(key=lambda a: first.get(a.name, 2))
    mem = MemorySystem.from_machine(machine, tcg=False)
    kvm_model = Kvm()
    kvm_model.attach(mem)

    def region(name: str, kind: RegionKind) -> MemoryRegion:
        found = [
            mr
            for mr in machine.regions()
            if mr.label == name
            and mr.kind is kind
            and mr.ownership is not None
            and mr.ownership.owner is not None
            and mr.ownership.owner.value == "n1"
        ]
        assert len(found) == 1, name
        return found[0]

    notify = region("virtio-pci-notify-virtio-net", RegionKind.IO)
    legacy = region("virtio-pci", RegionKind.IO)
    with mem.transaction():
        for q in range(3):
            mem.add_eventfd(notify, 4 * q, 0, False, q, notifier=q)
            mem.add_eventfd(legacy, 16, 2, True, q, notifier=q)
    with mem.transaction():
        for q in range(3):
            mem.del_eventfd(notify, 4 * q, 0, False, q, notifier=q)
            mem.del_eventfd(legacy, 16, 2, True, q, notifier=q)

    def shape(e: IoeventfdCall | TracedIoeventfd) -> tuple[str, int, int, int, bool, bool]:
        return (e.space, e.addr, e.size, e.data, e.match_data, e.assign)

    qemu = added + removed
    assert len(added) == 6 and len(removed) == 6
    assert [shape(e) for e in kvm_model.ioeventfd_calls] == [shape(e) for e in qemu]
    # One EventNotifier per queue, used for both transports and for adding and
    # removing: the same pairing as our notifiers.
    pairs = {(c.notifier, e.fd) for c, e in zip(kvm_model.ioeventfd_calls, qemu, strict=True)}
    assert len(pairs) == 3 == len({fd for _, fd in pairs})


@pytest.mark.qemu
@pytest.mark.kvm
async def test_slots_command_on_a_live_vm_prints_qemus_table(
    qemu_binary: str, kvm: None, tmp_path: Path
) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="qm-slots-"))  # short: sun_path is 108 bytes
    sock = sock_dir / "qmp.sock"
    args = ["-machine", "q35,smm=off", "-m", "6G", "-qmp", f"unix:{sock},server=on,wait=off"]
    try:
        async with traced(qemu_binary, tmp_path, args) as vm:
            run = await run_qmirror("slots", f"unix:{sock}", "--format", "json", timeout=60)
            qemu = final_slots(vm.events())
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    got = sorted(
        (s["as_id"], int(s["gpa"], 16), int(s["size"], 16), int(s["flags"], 16))
        for s in doc["slots"]
    )
    assert got == sorted(s.key for s in qemu)
    assert (0, 0x100000000, 0x100000000, 0) in got  # ram-above-4g: 6G - 2G below 4 GiB
