"""KVM memory slots as QEMU 7.2 creates them (reference §5.6).

QEMU's KVM accelerator is a set of memory listeners (priority 10): one per KVM
address space (``address_space_memory`` as ``as_id`` 0 and, on x86 with SMM, the
``KVM-SMRAM`` address space as ``as_id`` 1) that turn ``region_add``/``region_del``
into ``KVM_SET_USER_MEMORY_REGION`` calls (``kvm_set_phys_mem``), and one on the I/O
address space for port ioeventfds. :class:`KvmMemoryListener` and
:class:`KvmIoListener` do the same on the model and record the calls;
:class:`Kvm` bundles them like ``kvm_init`` registers them. The rules, all from
``accel/kvm/kvm-all.c``:

* only RAM (including ROM and RAM devices) gets slots, and ROM devices in ROMD mode
  when read-only memory is allowed (x86: yes); a ROM device leaving ROMD mode loses
  its slot; MMIO never has one;
* a section is aligned inward to the host page size; what is left of it becomes one
  slot (or several of at most ``max_slot_size`` bytes), each in the first free slot;
* ``flags``: ``LOG_DIRTY_PAGES`` when the region logs for any client,
  ``READONLY`` when *the region itself* is read-only or a ROM device in ROMD mode —
  never because an alias on the way is read-only (PAM's ``pam-rom``);
* deleting is a call with size 0 for the exactly matching slot(s);
* ``log_start`` (old mask 0) and ``log_stop`` (new mask 0) rewrite the flags of the
  exactly matching slots; if the ``READONLY`` bit changes that way, QEMU first
  deletes the slot (an ioctl its trace does not show) and then re-creates it.

:func:`predict_slots` is the slot table for a snapshot (every range replayed as
``region_add``, as on registration); :func:`slot_calls_between` replays the topology
change between two snapshots. What a snapshot cannot tell: slot numbers (they depend
on the VM's history; given QEMU's table before a change, the first-free rule
predicts them), ``userspace_addr`` (only its offset inside the region's RAMBlock),
and the intermediate states of changes QEMU made in several transactions.

:func:`has_exact_slot` and :func:`accel_suffix` give the `` KVM`` suffix of
``info mtree -f`` (reference §4.7) from the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qmirror.core.model import AddressSpace, Machine, MemoryRegion, RegionKind
from qmirror.core.render import FlatRange, FlatView, flatview_root, render
from qmirror.errors import ModelError
from qmirror.sim.listener import Listeners, MemoryListener, Section, TopologyEvent
from qmirror.sim.topology import transitions
from qmirror.text.kvmtrace import TracedIoeventfd, TracedSlotCall


if TYPE_CHECKING:
    from qmirror.sim.memory import MemorySystem


__all__ = [
    "HOST_PAGE_SIZE",
    "KVM_ADDRESS_SPACES",
    "KVM_MEM_LOG_DIRTY_PAGES",
    "KVM_MEM_READONLY",
    "IoeventfdCall",
    "Kvm",
    "KvmConfig",
    "KvmIoListener",
    "KvmMemoryListener",
    "KvmSlot",
    "SlotCall",
    "accel_suffix",
    "align_section",
    "gets_slot",
    "has_exact_slot",
    "kvm_address_spaces",
    "predict_slots",
    "slot_calls_between",
    "slot_flags",
]

#: Host page size KVM aligns slots to (x86-64 and the Debian hosts we run on).
HOST_PAGE_SIZE = 4096
#: The address spaces KVM registers memory listeners on, by QEMU's names for them,
#: in ``as_id`` order: ``address_space_memory`` (0) and, on x86 with SMM, ``KVM-SMRAM`` (1).
KVM_ADDRESS_SPACES = ("memory", "KVM-SMRAM")
#: ``kvm_userspace_memory_region.flags`` bits (linux/kvm.h).
KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1


@dataclass(frozen=True, slots=True)
class KvmConfig:
    """What the host kernel and QEMU decided at ``kvm_init``.

    :param page_size: ``qemu_real_host_page_size``.
    :param max_slot_size: ``kvm_max_slot_size``; ``None`` is unlimited (all but s390x).
    :param readonly_mem: ``KVM_CAP_READONLY_MEM`` (x86: yes): ROM devices get slots
        and the ``READONLY`` flag is used.
    :param nr_slots: ``KVM_CAP_NR_MEMSLOTS``; ``None`` for no limit. QEMU aborts when
        no slot is free; we raise :class:`~qmirror.errors.ModelError`.
    :param eventfds: ``kvm_eventfds_allowed``: the memory listener of ``as_id`` 0 and
        the I/O listener register ioeventfds.
    """

    page_size: int = HOST_PAGE_SIZE
    max_slot_size: int | None = None
    readonly_mem: bool = True
    nr_slots: int | None = None
    eventfds: bool = True


@dataclass(frozen=True, slots=True)
class KvmSlot:
    """One occupied KVM memory slot.

    :param offset_in_region: where the slot starts inside ``mr`` (its RAMBlock):
        QEMU's ``userspace_addr`` is the block's host address plus this. ``None``
        when the slot was loaded from a trace.
    """

    as_id: int
    slot: int
    gpa: int
    size: int
    flags: int
    mr: MemoryRegion | None = field(default=None, compare=False)
    offset_in_region: int | None = field(default=None, compare=False)

    @property
    def end(self) -> int:
        return self.gpa + self.size

    @property
    def key(self) -> tuple[int, int, int, int]:
        """``(as_id, gpa, size, flags)``: what a snapshot predicts (slot numbers aside)."""
        return (self.as_id, self.gpa, self.size, self.flags)


@dataclass(frozen=True, slots=True)
class SlotCall:
    """One ``KVM_SET_USER_MEMORY_REGION`` ioctl.

    :param size: 0 deletes the slot (``gpa`` and ``flags`` are then what QEMU passes:
        the old start, flags 0 — or the new flags for the hidden step of a
        read-only flip).
    :param traced: whether QEMU's ``kvm_set_user_memory`` trace shows it: the size-0
        call that precedes a ``READONLY`` flip in place is not traced.
    """

    as_id: int
    slot: int
    flags: int
    gpa: int
    size: int
    mr: MemoryRegion | None = field(default=None, compare=False)
    offset_in_region: int | None = field(default=None, compare=False)
    traced: bool = True

    @property
    def slot_field(self) -> int:
        """The ioctl's ``slot`` field: slot number | as_id << 16."""
        return self.slot | (self.as_id << 16)

    @property
    def key(self) -> tuple[int, int, int, int]:
        """``(as_id, gpa, size, flags)``: the call without its slot number."""
        return (self.as_id, self.gpa, self.size, self.flags)


@dataclass(frozen=True, slots=True)
class IoeventfdCall:
    """One ``KVM_IOEVENTFD`` ioctl (``kvm_set_ioeventfd_mmio`` / ``_pio``)."""

    space: str  # "mmio" (memory listener, as_id 0) or "pio" (I/O listener)
    addr: int
    size: int
    data: int
    match_data: bool
    assign: bool
    notifier: int = field(compare=False)


def _ioeventfd_call(
    space: str, section: Section, match_data: bool, data: int, assign: bool, notifier: int
) -> IoeventfdCall:
    """The ``KVM_IOEVENTFD`` call a listener's eventfd_add/eventfd_del makes."""
    return IoeventfdCall(
        space,
        section.offset_within_address_space,
        section.size,
        data,
        match_data,
        assign,
        notifier,
    )


# -- the rules -------------------------------------------------------------------------


def align_section(start: int, size: int, page_size: int = HOST_PAGE_SIZE) -> tuple[int, int]:
    """``kvm_align_section``: round the start up and the rest down to whole pages.

    :return: ``(aligned start, aligned size)``; the size is 0 when no whole page fits.
    """
    aligned = -(-start // page_size) * page_size
    delta = aligned - start
    if delta > size:
        return aligned, 0
    return aligned, (size - delta) // page_size * page_size


def _is_romd(mr: MemoryRegion) -> bool:
    """``memory_region_is_romd``: a ROM device in ROMD mode."""
    return mr.kind is RegionKind.ROMD and mr.romd_mode


def slot_flags(mr: MemoryRegion, dirty_log_mask: int, *, readonly_mem: bool = True) -> int:
    """``kvm_mem_flags``: the flags of a slot for ``mr`` (its own read-only flag only)."""
    flags = KVM_MEM_LOG_DIRTY_PAGES if dirty_log_mask else 0
    if (mr.readonly or _is_romd(mr)) and readonly_mem:
        flags |= KVM_MEM_READONLY
    return flags


def _slot_capable(mr: MemoryRegion, readonly_mem: bool) -> bool:
    """RAM, or a ROM device when read-only memory is allowed (in or out of ROMD mode)."""
    if mr.is_ram:
        return True
    return mr.kind is RegionKind.ROMD and readonly_mem


def gets_slot(r: FlatRange, *, readonly_mem: bool = True) -> bool:
    """Whether ``kvm_set_phys_mem`` would map (part of) this range into a slot.

    RAM (including ROM and RAM devices) always; a ROM device only in ROMD mode and
    only when the kernel allows read-only memory (``KVM_CAP_READONLY_MEM``, true on
    x86). MMIO never: every access exits to QEMU.
    """
    if r.mr.is_ram:
        return True
    return _is_romd(r.mr) and readonly_mem


def has_exact_slot(
    r: FlatRange,
    *,
    page_size: int = HOST_PAGE_SIZE,
    max_slot_size: int | None = None,
    readonly_mem: bool = True,
) -> bool:
    """Whether ``kvm_lookup_matching_slot`` finds a slot for this range's extent.

    ``kvm_accel_has_memory`` looks for a slot with the range's start and size (capped
    at ``max_slot_size``); slots are the range aligned inward, so only page-aligned
    ranges keep their exact extent. This is what QEMU's `` KVM`` suffix shows.
    """
    if not gets_slot(r, readonly_mem=readonly_mem):
        return False
    start, size = align_section(r.start, r.size, page_size)
    if size == 0:
        return False
    if max_slot_size is None:
        return start == r.start and size == r.size
    return start == r.start and min(max_slot_size, size) == min(max_slot_size, r.size)


def accel_suffix(view: FlatView, r: FlatRange) -> tuple[str, ...]:
    """The accelerator words QEMU 7.2 appends to a range line under KVM.

    One ``KVM`` per address space of the view that KVM tracks and in which the
    range has an exact slot.
    """
    tracked = sum(1 for a in view.address_spaces if a.name in KVM_ADDRESS_SPACES)
    if tracked and has_exact_slot(r):
        return ("KVM",) * tracked
    return ()


# -- the listeners ---------------------------------------------------------------------


@dataclass(slots=True)
class _Slot:
    """A ``KVMSlot``: free while ``size`` is 0. ``old_flags`` are the flags last sent."""

    slot: int
    gpa: int = 0
    size: int = 0
    flags: int = 0
    old_flags: int = 0
    mr: MemoryRegion | None = None
    offset_in_region: int | None = None


class KvmMemoryListener(MemoryListener):
    """``KVMMemoryListener`` for one KVM address space: slots and the calls that set them.

    :param as_id: 0 for ``address_space_memory``, 1 for ``KVM-SMRAM``.
    :param calls: where to append the ``KVM_SET_USER_MEMORY_REGION`` calls (share one
        list between listeners to see the VM's order); a new list by default.
    :param ioeventfd_calls: where to record MMIO ioeventfds, or ``None`` if this
        listener does not handle them (QEMU gives them to the ``as_id`` 0 one only).
    """

    def __init__(
        self,
        as_id: int = 0,
        config: KvmConfig | None = None,
        *,
        calls: list[SlotCall] | None = None,
        ioeventfd_calls: list[IoeventfdCall] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(priority=10)
        self.as_id = as_id
        self.config = config if config is not None else KvmConfig()
        self.calls: list[SlotCall] = calls if calls is not None else []
        self.ioeventfd_calls = ioeventfd_calls if self.config.eventfds else None
        self.name = name if name is not None else ("kvm-memory" if as_id == 0 else "kvm-smram")
        self._slots: list[_Slot] = []

    def __repr__(self) -> str:
        used = sum(1 for s in self._slots if s.size)
        return f"<KvmMemoryListener as_id={self.as_id} slots={used}>"

    # -- the slot table ---------------------------------------------------------------

    def table(self) -> list[KvmSlot]:
        """The occupied slots, by slot number."""
        return [
            KvmSlot(self.as_id, s.slot, s.gpa, s.size, s.flags, s.mr, s.offset_in_region)
            for s in self._slots
            if s.size
        ]

    def load(self, slots: Iterable[KvmSlot]) -> None:
        """Replace the table with ``slots`` (for example QEMU's, replayed from its trace),
        so later calls pick the same slot numbers QEMU does."""
        self._slots = []
        for k in slots:
            if k.as_id != self.as_id:
                continue
            s = self._entry(k.slot)
            s.gpa, s.size, s.flags, s.old_flags = k.gpa, k.size, k.flags, k.flags
            s.mr, s.offset_in_region = k.mr, k.offset_in_region

    def _entry(self, n: int) -> _Slot:
        while len(self._slots) <= n:
            self._slots.append(_Slot(len(self._slots)))
        return self._slots[n]

    def _lookup(self, gpa: int, size: int) -> _Slot | None:
        """``kvm_lookup_matching_slot``: exact start and size."""
        return next((s for s in self._slots if s.size == size and s.gpa == gpa), None)

    def _alloc(self) -> _Slot:
        """``kvm_alloc_slot``: the first free slot."""
        free = next((s for s in self._slots if s.size == 0), None)
        if free is not None:
            return free
        limit = self.config.nr_slots
        if limit is not None and len(self._slots) >= limit:
            raise ModelError(f"no free KVM slot (as_id {self.as_id}, {limit} slots in use)")
        return self._entry(len(self._slots))

    def _ioctl(self, s: _Slot, *, new: bool) -> None:
        """``kvm_set_user_memory_region``."""
        if s.size and not new and (s.flags ^ s.old_flags) & KVM_MEM_READONLY:
            # KVM cannot flip READONLY in place: delete first (QEMU does not trace this).
            self.calls.append(
                SlotCall(
                    self.as_id, s.slot, s.flags, s.gpa, 0, s.mr, s.offset_in_region, traced=False
                )
            )
        self.calls.append(
            SlotCall(self.as_id, s.slot, s.flags, s.gpa, s.size, s.mr, s.offset_in_region)
        )
        s.old_flags = s.flags

    def _chunks(self, start: int, size: int) -> Iterable[tuple[int, int]]:
        cap = self.config.max_slot_size
        while size:
            n = size if cap is None else min(cap, size)
            yield start, n
            start += n
            size -= n

    # -- kvm_set_phys_mem -------------------------------------------------------------

    def set_phys_mem(self, section: Section, add: bool) -> None:
        """``kvm_set_phys_mem``: map (``add``) or unmap one section."""
        mr = section.mr
        if mr is None:
            return
        cfg = self.config
        if not mr.is_ram:
            if not _slot_capable(mr, cfg.readonly_mem):
                return  # MMIO: every access exits to QEMU
            if not mr.romd_mode:
                add = False  # a ROM device in MMIO mode: take its slot away
        start, size = align_section(
            section.offset_within_address_space, section.size, cfg.page_size
        )
        if size == 0:
            return
        offset = section.offset_within_region + (start - section.offset_within_address_space)
        if not add:
            for gpa, n in self._chunks(start, size):
                s = self._lookup(gpa, n)
                if s is None:
                    return
                s.size = 0
                s.flags = 0
                self._ioctl(s, new=False)
            return
        flags = slot_flags(mr, section.dirty_log_mask, readonly_mem=cfg.readonly_mem)
        for gpa, n in self._chunks(start, size):
            s = self._alloc()
            s.gpa, s.size, s.flags, s.mr = gpa, n, flags, mr
            s.offset_in_region = offset + (gpa - start)
            self._ioctl(s, new=True)

    def _update_flags(self, section: Section) -> None:
        """``kvm_section_update_flags``: re-send the flags of the matching slots."""
        mr = section.mr
        if mr is None:
            return
        start, size = align_section(
            section.offset_within_address_space, section.size, self.config.page_size
        )
        for gpa, n in self._chunks(start, size):
            s = self._lookup(gpa, n)
            if s is None:
                return
            s.flags = slot_flags(mr, section.dirty_log_mask, readonly_mem=self.config.readonly_mem)
            if s.flags != s.old_flags:
                self._ioctl(s, new=False)

    # -- MemoryListener ---------------------------------------------------------------

    def region_add(self, section: Section) -> None:
        self.set_phys_mem(section, True)

    def region_del(self, section: Section) -> None:
        self.set_phys_mem(section, False)

    def log_start(self, section: Section, old: int, new: int) -> None:
        if old == 0:
            self._update_flags(section)

    def log_stop(self, section: Section, old: int, new: int) -> None:
        if new == 0:
            self._update_flags(section)

    def eventfd_add(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        if self.ioeventfd_calls is not None:
            self.ioeventfd_calls.append(
                _ioeventfd_call("mmio", section, match_data, data, True, notifier)
            )

    def eventfd_del(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        if self.ioeventfd_calls is not None:
            self.ioeventfd_calls.append(
                _ioeventfd_call("mmio", section, match_data, data, False, notifier)
            )


class KvmIoListener(MemoryListener):
    """``kvm_io_listener`` (priority 10) on the I/O address space: port ioeventfds."""

    name = "kvm-io"

    def __init__(self, calls: list[IoeventfdCall] | None = None) -> None:
        super().__init__(priority=10)
        self.calls: list[IoeventfdCall] = calls if calls is not None else []

    def eventfd_add(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        self.calls.append(_ioeventfd_call("pio", section, match_data, data, True, notifier))

    def eventfd_del(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        self.calls.append(_ioeventfd_call("pio", section, match_data, data, False, notifier))


class Kvm:
    """The KVM accelerator's listeners for one VM, sharing one ordered record of calls.

    :attr:`memory` (``as_id`` 0, also MMIO ioeventfds), :attr:`smram` (``as_id`` 1) and
    :attr:`io` (port ioeventfds). :meth:`attach` registers them on a
    :class:`~qmirror.sim.memory.MemorySystem` the way ``kvm_init`` does.
    """

    def __init__(self, config: KvmConfig | None = None) -> None:
        self.config = config if config is not None else KvmConfig()
        #: Every ``KVM_SET_USER_MEMORY_REGION``, both address spaces, in order.
        self.calls: list[SlotCall] = []
        #: Every ``KVM_IOEVENTFD``, MMIO and PIO, in order.
        self.ioeventfd_calls: list[IoeventfdCall] = []
        self.memory = KvmMemoryListener(
            0, self.config, calls=self.calls, ioeventfd_calls=self.ioeventfd_calls
        )
        self.smram = KvmMemoryListener(1, self.config, calls=self.calls)
        self.io = KvmIoListener(self.ioeventfd_calls)

    def attach(self, mem: MemorySystem) -> None:
        """Register on the address spaces named ``memory``, ``I/O`` and, if it exists,
        ``KVM-SMRAM`` (the first of each name), in that order.

        :raise ModelError: there is no ``memory`` address space.
        """
        by_name = _first_by_name(mem.address_spaces)
        memory = by_name.get("memory")
        if memory is None:
            raise ModelError("no address space named 'memory' to attach KVM to")
        mem.register(self.memory, memory)
        if "I/O" in by_name and self.config.eventfds:
            mem.register(self.io, by_name["I/O"])
        if "KVM-SMRAM" in by_name:
            mem.register(self.smram, by_name["KVM-SMRAM"])

    def slots(self) -> list[KvmSlot]:
        """Both slot tables, ``as_id`` 0 first."""
        return self.memory.table() + self.smram.table()


def _first_by_name(address_spaces: Iterable[AddressSpace]) -> dict[str, AddressSpace]:
    out: dict[str, AddressSpace] = {}
    for a in address_spaces:
        out.setdefault(a.name, a)
    return out


def kvm_address_spaces(machine: Machine) -> list[tuple[int, AddressSpace]]:
    """``(as_id, address space)`` for each KVM address space the machine has."""
    by_name = _first_by_name(machine.address_spaces)
    return [
        (as_id, by_name[name]) for as_id, name in enumerate(KVM_ADDRESS_SPACES) if name in by_name
    ]


# -- snapshots -------------------------------------------------------------------------


def predict_slots(machine: Machine, config: KvmConfig | None = None) -> list[KvmSlot]:
    """The KVM slot table for a snapshot of a VM running under KVM.

    Every range of each KVM address space is replayed as ``region_add`` in address
    order, as when the listener registers. The set of ``(as_id, gpa, size, flags)``
    is what QEMU's table holds; slot numbers are this replay's (QEMU's depend on the
    VM's history).
    """
    machine.check()
    out: list[KvmSlot] = []
    for as_id, a in kvm_address_spaces(machine):
        listener = KvmMemoryListener(as_id, config)
        Listeners().register(listener, a, render(flatview_root(a.root)))
        out.extend(listener.table())
    return out


def slot_calls_between(
    old: Machine,
    new: Machine,
    *,
    config: KvmConfig | None = None,
    before: Sequence[KvmSlot] | None = None,
) -> list[SlotCall]:
    """The ``KVM_SET_USER_MEMORY_REGION`` calls for the change from ``old`` to ``new``.

    QEMU's two topology passes between the two snapshots
    (:func:`qmirror.sim.topology.transitions`, ranges matched by value) are delivered to
    KVM listeners whose tables start as ``before`` (QEMU's table, for instance from
    its trace: then the slot numbers are QEMU's too) or, by default, as predicted
    for ``old``. If QEMU made the change in several transactions, this is the
    single transaction that goes straight from ``old`` to ``new``.
    """
    seed = list(before) if before is not None else predict_slots(old, config)
    as_ids = {a: as_id for m in (old, new) for as_id, a in kvm_address_spaces(m)}
    # Only KVM's address spaces matter. They are diffed in creation order, which the
    # tree text does not show (G9); QEMU creates address_space_memory at start-up and
    # KVM-SMRAM when the machine is done, so as_id order is creation order.
    tracked: list[tuple[int, AddressSpace, list[TopologyEvent]]] = []
    for tr in transitions(old, new):
        a = tr.new if tr.new is not None else tr.old
        assert a is not None
        if a in as_ids:
            tracked.append((as_ids[a], a, tr.events))
    tracked.sort(key=lambda t: t[0])
    calls: list[SlotCall] = []
    listeners = Listeners()
    for as_id, a, _ in tracked:
        listener = KvmMemoryListener(as_id, config, calls=calls)
        listener.load(seed)
        listeners.register(listener, a)
    listeners.call_global("begin")
    for _, a, events in tracked:
        listeners.deliver_topology(a, events)
    listeners.call_global("commit")
    return calls


# -- replaying QEMU's trace (qmirror.text.kvmtrace parses it) --------------------


def slot_calls(events: Iterable[TracedSlotCall | TracedIoeventfd]) -> list[TracedSlotCall]:
    """Only the slot calls."""
    return [e for e in events if isinstance(e, TracedSlotCall)]


def final_slots(
    calls: Iterable[TracedSlotCall | TracedIoeventfd], start: Iterable[KvmSlot] = ()
) -> list[KvmSlot]:
    """The slot table the calls leave behind (after ``start``), by ``(as_id, slot)``.

    A size-0 call frees its slot; any other call (re)defines it. Failed calls
    (``ret`` < 0) change nothing.
    """
    table: dict[tuple[int, int], KvmSlot] = {(s.as_id, s.slot): s for s in start}
    for c in calls:
        if not isinstance(c, TracedSlotCall) or c.ret < 0:
            continue
        if c.size == 0:
            table.pop((c.as_id, c.slot), None)
        else:
            table[(c.as_id, c.slot)] = KvmSlot(c.as_id, c.slot, c.gpa, c.size, c.flags)
    return [table[k] for k in sorted(table)]
