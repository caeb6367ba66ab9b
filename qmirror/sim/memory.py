"""QEMU's memory API on the model: build machines in code, change them, hear the listeners.

:class:`MemorySystem` is the global state of QEMU's ``softmmu/memory.c`` (reference
§1.5, §3, §5): the address spaces in creation order, the transaction depth, the two
"update pending" flags, the table of FlatViews keyed by resolved root, global dirty
tracking, and the registered :class:`~qmirror.sim.listener.MemoryListener`\\ s. Regions are
plain :class:`~qmirror.core.model.MemoryRegion` objects; every mutator is a method of the
system, named after QEMU's function without the ``memory_region_`` prefix, and
behaves like it:

* each mutator runs in its own transaction and sets the pending flag QEMU sets (the
  table in reference §1.5); outside a transaction the change commits at once;
* the outermost :meth:`~MemorySystem.commit` does what
  ``memory_region_transaction_commit`` does, in the same order (reference §5.1):
  re-render every distinct FlatView root (address spaces in creation order), global
  ``begin`` (Forward), then per address space in creation order the two topology
  passes (only when its FlatView object changed) and the ioeventfd diff, then
  global ``commit`` (Forward); a commit with only ioeventfd changes runs just the
  ioeventfd diffs, without ``begin``/``commit``;
* during an address space's passes :meth:`~MemorySystem.flatview` still returns its
  old view, as ``address_space_to_flatview`` does in QEMU; the switch follows the
  passes.

Example: a PC-like low memory with one PAM-style segment, and a listener::

    from qmirror.sim.listener import MemoryListener, Section
    from qmirror.sim.memory import UINT64_MAX, MemorySystem

    class Printer(MemoryListener):
        def region_add(self, s: Section) -> None:
            print("add", s.mr.label, hex(s.offset_within_address_space), hex(s.size))

        def region_del(self, s: Section) -> None:
            print("del", s.mr.label, hex(s.offset_within_address_space), hex(s.size))

    mem = MemorySystem()
    system = mem.init_container("system", UINT64_MAX)
    ram = mem.init_ram("pc.ram", 0x8000000)
    mem.add_subregion(system, 0, mem.init_alias("ram-below-4g", ram, 0, 0x8000000))
    bios = mem.init_rom("isa-bios", 0x10000)
    mem.add_subregion(system, 0xf0000, bios, priority=1)
    memory = mem.address_space_init(system, "memory")
    mem.register(Printer(), memory)       # replays: add pc.ram 0x0 …, add isa-bios …

    with mem.transaction():               # one commit for both changes
        mem.set_enabled(bios, False)
        mem.set_readonly(ram, True)
    # del pc.ram 0x0 0xf0000 / del isa-bios 0xf0000 0x10000 / del pc.ram 0x100000 …
    # add pc.ram 0x0 0x8000000 (one read-only range now)

:class:`~qmirror.sim.kvm.KvmMemoryListener` turns these callbacks into KVM memory slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from qmirror.core.model import SIZE_2_64, AddressSpace, IOEventFD, Machine, MemoryRegion, RegionKind
from qmirror.core.render import FlatView, flatview_root, render
from qmirror.errors import ModelError
from qmirror.rebuild.rules import DIRTY_MEMORY_CODE, DIRTY_MEMORY_MIGRATION, DIRTY_MEMORY_VGA
from qmirror.sim.listener import Listeners, MemoryListener, flatview_ioeventfds, topology_diff


__all__ = [
    "DIRTY_MEMORY_CODE",
    "DIRTY_MEMORY_MIGRATION",
    "DIRTY_MEMORY_VGA",
    "UINT64_MAX",
    "MemorySystem",
    "ioeventfd_equal",
]

#: What C callers pass for "the whole 64-bit space"; stored as a size of 2**64.
UINT64_MAX = SIZE_2_64 - 1

#: Regions that own a RAMBlock (``mr->ram_block``): what TCG and migration log.
_HAS_RAM_BLOCK = (RegionKind.RAM, RegionKind.ROM, RegionKind.ROMD, RegionKind.RAMD)
#: RAMBlocks registered for migration: the ``memory_region_init_ram``/``rom``/``rom_device``
#: families call ``vmstate_register_ram``; RAM devices (VFIO BARs) do not.
_MIGRATABLE = (RegionKind.RAM, RegionKind.ROM, RegionKind.ROMD)


def _size(size: int) -> int:
    """``memory_region_init``/``set_size``: UINT64_MAX means 2**64, anything else is literal."""
    if size == UINT64_MAX:
        return SIZE_2_64
    if not 0 <= size < SIZE_2_64:
        raise ModelError(f"size {size:#x} is not a 64-bit value")
    return size


def ioeventfd_equal(a: IOEventFD, b: IOEventFD) -> bool:
    """QEMU 7.2's ``memory_region_ioeventfd_equal``, used to find what to delete.

    Same start, and either size is 0 (a wildcard: nothing else is compared), or
    same size, same ``match_data``, same ``data`` when matching, same notifier.
    """
    if a.start != b.start:
        return False
    if a.size == 0 or b.size == 0:
        return True
    return (
        a.size == b.size
        and a.match_data == b.match_data
        and (not a.match_data or a.data == b.data)
        and a.notifier == b.notifier
    )


class MemorySystem:
    """The global memory state of one simulated QEMU, and its memory API.

    :param tcg: the accelerator is TCG: every region with a RAMBlock logs for the
        ``CODE`` client (``memory_region_get_dirty_log_mask``). Under KVM it does not.
    """

    def __init__(self, *, tcg: bool = False) -> None:
        self.tcg = tcg
        #: Every address space, in creation order (QEMU's global list).
        self.address_spaces: list[AddressSpace] = []
        #: The registered listeners (global list and per-address-space lists).
        self.listeners = Listeners()
        self._depth = 0
        self._memory_update_pending = False
        self._ioeventfd_update_pending = False
        self._global_dirty_log = False
        #: ``flat_views``: resolved root (by identity) → FlatView. QEMU keeps one empty
        #: view for "no root" for the life of the process.
        self._empty = FlatView(None, [])
        self._views: dict[MemoryRegion | None, FlatView] = {None: self._empty}
        #: Per address space (by identity): its current FlatView and ioeventfds.
        self._current: dict[AddressSpace, FlatView] = {}
        self._ioeventfds: dict[AddressSpace, list[IOEventFD]] = {}
        # Keyed by id(): a listener is a user subclass that may define __eq__ (and so be
        # unhashable); self.listeners keeps it alive while registered, so ids stay unique.
        self._listening: dict[int, AddressSpace | None] = {}
        self._vga_logging: dict[MemoryRegion, int] = {}

    def __repr__(self) -> str:
        names = ", ".join(repr(a.name) for a in self.address_spaces)
        return f"<MemorySystem [{names}] depth={self._depth}>"

    # -- state ---------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """How many transactions are open."""
        return self._depth

    @property
    def memory_update_pending(self) -> bool:
        """``memory_region_update_pending``: the next outermost commit re-renders."""
        return self._memory_update_pending

    @property
    def ioeventfd_update_pending(self) -> bool:
        """``ioeventfd_update_pending``: the next outermost commit diffs ioeventfds."""
        return self._ioeventfd_update_pending

    @property
    def global_dirty_log(self) -> bool:
        """Whether global dirty tracking (migration) is on."""
        return self._global_dirty_log

    def flatview(self, address_space: AddressSpace) -> FlatView:
        """The address space's current FlatView (``address_space_to_flatview``)."""
        try:
            return self._current[address_space]
        except KeyError:
            raise ModelError(f"{address_space!r} is not an address space of this system") from None

    def ioeventfds(self, address_space: AddressSpace) -> list[IOEventFD]:
        """The address space's current ioeventfds, absolute, in QEMU's list order."""
        self.flatview(address_space)
        return list(self._ioeventfds[address_space])

    def views(self) -> list[FlatView]:
        """The current FlatViews, in the order of the first address space using each."""
        return list(dict.fromkeys(self._current[a] for a in self.address_spaces))

    def machine(self) -> Machine:
        """The current state as a :class:`~qmirror.core.model.Machine` (shares the regions)."""
        return Machine(address_spaces=list(self.address_spaces), accel="tcg" if self.tcg else None)

    def dirty_log_mask(self, mr: MemoryRegion) -> int:
        """``memory_region_get_dirty_log_mask``: the clients logging ``mr`` right now.

        The region's own mask (VGA), plus ``MIGRATION`` while global dirty tracking
        is on (migratable RAM and IOMMU regions), plus ``CODE`` under TCG (anything
        with a RAMBlock).
        """
        mask = mr.dirty_log_mask
        if self._global_dirty_log and (mr.kind in _MIGRATABLE or mr.kind is RegionKind.IOMMU):
            mask |= DIRTY_MEMORY_MIGRATION
        if self.tcg and mr.kind in _HAS_RAM_BLOCK:
            mask |= DIRTY_MEMORY_CODE
        return mask

    @classmethod
    def from_machine(cls, machine: Machine, *, tcg: bool | None = None) -> MemorySystem:
        """A system whose address spaces are ``machine``'s, in its order, ready to change.

        The regions are shared, not copied: use it on a model you own (one parsed
        from a snapshot, say) to simulate what QEMU does next.
        """
        mem = cls(tcg=machine.accel == "tcg" if tcg is None else tcg)
        machine.check()
        for a in machine.address_spaces:
            mem._attach(a)
        return mem

    # -- regions (memory_region_init_*) ----------------------------------------------

    def init_container(self, name: str | None, size: int) -> MemoryRegion:
        """``memory_region_init``: a pure container."""
        return MemoryRegion(name, RegionKind.CONTAINER, _size(size))

    def init_io(self, name: str | None, size: int) -> MemoryRegion:
        """``memory_region_init_io``: MMIO or PIO callbacks (terminates)."""
        return MemoryRegion(name, RegionKind.IO, _size(size))

    def init_ram(self, name: str | None, size: int) -> MemoryRegion:
        """``memory_region_init_ram``."""
        return MemoryRegion(name, RegionKind.RAM, _size(size))

    def init_rom(self, name: str | None, size: int) -> MemoryRegion:
        """``memory_region_init_rom``: RAM that starts read-only."""
        return MemoryRegion(name, RegionKind.ROM, _size(size), readonly=True)

    def init_rom_device(self, name: str | None, size: int) -> MemoryRegion:
        """``memory_region_init_rom_device``: starts in ROMD mode (reads hit the RAM)."""
        return MemoryRegion(name, RegionKind.ROMD, _size(size), romd_mode=True)

    def init_ram_device(self, name: str | None, size: int) -> MemoryRegion:
        """``memory_region_init_ram_device_ptr``: device memory mapped to the guest."""
        return MemoryRegion(name, RegionKind.RAMD, _size(size))

    def init_iommu(self, name: str | None, size: int) -> MemoryRegion:
        """``memory_region_init_iommu``."""
        return MemoryRegion(name, RegionKind.IOMMU, _size(size))

    def init_alias(
        self, name: str | None, orig: MemoryRegion, offset: int, size: int
    ) -> MemoryRegion:
        """``memory_region_init_alias``: ``size`` bytes of ``orig`` from ``offset``."""
        return MemoryRegion(name, RegionKind.ALIAS, _size(size), alias=orig, alias_offset=offset)

    # -- transactions ----------------------------------------------------------------

    def begin(self) -> None:
        """``memory_region_transaction_begin``."""
        self._depth += 1

    def commit(self) -> None:
        """``memory_region_transaction_commit``: the outermost one applies everything.

        :raise ModelError: no transaction is open.
        """
        if self._depth == 0:
            raise ModelError("commit without a matching begin")
        self._depth -= 1
        if self._depth:
            return
        if self._memory_update_pending:
            self._flatviews_reset()
            self.listeners.call_global("begin")
            for a in list(self.address_spaces):
                self._set_flatview(a)
                self._update_ioeventfds(a)
            self._memory_update_pending = self._ioeventfd_update_pending = False
            self.listeners.call_global("commit")
        elif self._ioeventfd_update_pending:
            for a in list(self.address_spaces):
                self._update_ioeventfds(a)
            self._ioeventfd_update_pending = False

    @contextmanager
    def transaction(self) -> Iterator[MemorySystem]:
        """``begin`` … ``commit`` as a ``with`` block (committed even on an exception:
        QEMU has no rollback, and the depth must stay balanced)."""
        self.begin()
        try:
            yield self
        finally:
            self.commit()

    # -- mapping -----------------------------------------------------------------------

    def add_subregion(
        self, container: MemoryRegion, offset: int, subregion: MemoryRegion, *, priority: int = 0
    ) -> None:
        """``memory_region_add_subregion`` (priority 0) or ``…_overlap`` (``priority``).

        Pending if the container and the subregion are both enabled (their own flags
        only, not their ancestors').

        :raise ModelError: the subregion is already mapped, or mapping it would make
            a container cycle.
        """
        if subregion.container is not None:
            raise ModelError(
                f"{subregion.label!r} is already mapped in {subregion.container.label!r}"
            )
        up: MemoryRegion | None = container
        while up is not None:
            if up is subregion:
                raise ModelError(
                    f"mapping {subregion.label!r} into {container.label!r} makes a container cycle"
                )
            up = up.container
        with self.transaction():
            container.add_subregion(subregion, offset, priority)
            self._memory_update_pending |= container.enabled and subregion.enabled

    def add_subregion_overlap(
        self, container: MemoryRegion, offset: int, subregion: MemoryRegion, priority: int
    ) -> None:
        """``memory_region_add_subregion_overlap``."""
        self.add_subregion(container, offset, subregion, priority=priority)

    def del_subregion(self, container: MemoryRegion, subregion: MemoryRegion) -> None:
        """``memory_region_del_subregion``; pending under the same condition as adding.

        :raise ModelError: ``subregion`` is not mapped in ``container``.
        """
        if subregion.container is not container:
            raise ModelError(f"{subregion.label!r} is not a subregion of {container.label!r}")
        with self.transaction():
            container.del_subregion(subregion)
            self._memory_update_pending |= container.enabled and subregion.enabled

    def set_address(self, mr: MemoryRegion, addr: int) -> None:
        """``memory_region_set_address``: remove and re-add (it becomes the newest of its
        priority); a region not mapped anywhere just records the address."""
        if addr == mr.addr:
            return
        mr.addr = addr
        container = mr.container
        if container is None:
            return
        with self.transaction():
            self.del_subregion(container, mr)
            self.add_subregion(container, addr, mr, priority=mr.priority)

    # -- attributes --------------------------------------------------------------------

    def set_enabled(self, mr: MemoryRegion, enabled: bool) -> None:
        """``memory_region_set_enabled``: a change is always pending."""
        if enabled == mr.enabled:
            return
        with self.transaction():
            mr.enabled = enabled
            self._memory_update_pending = True

    def set_size(self, mr: MemoryRegion, size: int) -> None:
        """``memory_region_set_size`` (UINT64_MAX means 2**64): a change is always pending."""
        size = _size(size)
        if size == mr.size:
            return
        with self.transaction():
            mr.size = size
            self._memory_update_pending = True

    def set_alias_offset(self, mr: MemoryRegion, offset: int) -> None:
        """``memory_region_set_alias_offset``: pending if the alias is enabled.

        :raise ModelError: ``mr`` is not an alias.
        """
        if mr.alias is None:
            raise ModelError(f"{mr.label!r} is not an alias")
        if offset == mr.alias_offset:
            return
        with self.transaction():
            mr.alias_offset = offset
            self._memory_update_pending |= mr.enabled

    def set_readonly(self, mr: MemoryRegion, readonly: bool) -> None:
        """``memory_region_set_readonly``: pending if the region is enabled."""
        if readonly == mr.readonly:
            return
        with self.transaction():
            mr.readonly = readonly
            self._memory_update_pending |= mr.enabled

    def set_nonvolatile(self, mr: MemoryRegion, nonvolatile: bool) -> None:
        """``memory_region_set_nonvolatile``: pending if the region is enabled."""
        if nonvolatile == mr.nonvolatile:
            return
        with self.transaction():
            mr.nonvolatile = nonvolatile
            self._memory_update_pending |= mr.enabled

    def set_romd(self, mr: MemoryRegion, romd_mode: bool) -> None:
        """``memory_region_rom_device_set_romd``: pending if the region is enabled.

        :raise ModelError: ``mr`` is not a ROM device.
        """
        if mr.kind is not RegionKind.ROMD:
            raise ModelError(f"{mr.label!r} is not a ROM device")
        if romd_mode == mr.romd_mode:
            return
        with self.transaction():
            mr.romd_mode = romd_mode
            self._memory_update_pending |= mr.enabled

    # -- dirty logging -----------------------------------------------------------------

    def set_log(self, mr: MemoryRegion, log: bool, client: int = DIRTY_MEMORY_VGA) -> None:
        """``memory_region_set_log``: count VGA logging requests on ``mr``.

        Only the first ``True`` and the last ``False`` change the region's mask;
        pending if the region is enabled.

        :param client: the client's mask bit; QEMU accepts only ``DIRTY_MEMORY_VGA``
            here (CODE and MIGRATION logging are not per region).
        :raise ModelError: another client, or more ``False`` than ``True``.
        """
        if client != DIRTY_MEMORY_VGA:
            raise ModelError(
                "set_log takes only the VGA client (CODE comes from TCG, "
                "MIGRATION from log_global_start)"
            )
        before = self._vga_logging.get(mr, 0)
        after = before + (1 if log else -1)
        if after < 0:
            raise ModelError(f"set_log({mr.label!r}, False) without a matching True")
        self._vga_logging[mr] = after
        if bool(before) == bool(after):
            return
        with self.transaction():
            mr.dirty_log_mask = (mr.dirty_log_mask & ~client) | (client if log else 0)
            self._memory_update_pending |= mr.enabled

    def log_global_start(self) -> None:
        """``memory_global_dirty_log_start``: listeners' ``log_global_start`` (Forward),
        then a forced update that adds ``MIGRATION`` to every migratable range."""
        if self._global_dirty_log:
            return
        self._global_dirty_log = True
        self.listeners.call_global("log_global_start")
        with self.transaction():
            self._memory_update_pending = True

    def log_global_stop(self) -> None:
        """``memory_global_dirty_log_stop`` on a running VM: the forced update first,
        then the listeners' ``log_global_stop`` (Reverse)."""
        if not self._global_dirty_log:
            return
        self._global_dirty_log = False
        with self.transaction():
            self._memory_update_pending = True
        self.listeners.call_global("log_global_stop", reverse=True)

    # -- ioeventfds --------------------------------------------------------------------

    def add_eventfd(
        self, mr: MemoryRegion, addr: int, size: int, match_data: bool, data: int, notifier: int
    ) -> None:
        """``memory_region_add_eventfd``: kept sorted; pending (ioeventfds) if enabled.

        ``addr`` is region-relative. ``data`` is taken as already in the region's byte
        order (little-endian devices on a little-endian host: no swap).
        """
        fd = IOEventFD(addr, size, match_data, data, notifier)
        with self.transaction():
            fds = list(mr.ioeventfds)
            i = next(
                (k for k, other in enumerate(fds) if fd.sort_key() < other.sort_key()), len(fds)
            )
            fds.insert(i, fd)
            mr.ioeventfds = fds
            self._ioeventfd_update_pending |= mr.enabled

    def del_eventfd(
        self, mr: MemoryRegion, addr: int, size: int, match_data: bool, data: int, notifier: int
    ) -> None:
        """``memory_region_del_eventfd``: removes the first entry :func:`ioeventfd_equal`
        to this one (size 0 on either side matches any entry at ``addr``).

        :raise ModelError: nothing matches (QEMU asserts).
        """
        fd = IOEventFD(addr, size, match_data, data, notifier)
        fds = mr.ioeventfds
        i = next((k for k, other in enumerate(fds) if ioeventfd_equal(fd, other)), None)
        if i is None:
            raise ModelError(
                f"{mr.label!r} has no ioeventfd at {addr:#x} size {size} data {data:#x}"
            )
        with self.transaction():
            mr.ioeventfds = [*fds[:i], *fds[i + 1 :]]
            self._ioeventfd_update_pending |= mr.enabled

    # -- address spaces ----------------------------------------------------------------

    def address_space_init(self, root: MemoryRegion, name: str | None) -> AddressSpace:
        """``address_space_init``: joins the list and gets a FlatView right away.

        The view comes from the table if its resolved root has one (inside a
        transaction that may be the state before it), otherwise it is rendered now.
        """
        a = AddressSpace("anonymous" if name is None else name, root)
        self._attach(a)
        return a

    def address_space_destroy(self, address_space: AddressSpace) -> None:
        """``address_space_destroy``: an empty transaction with no root, then unlink.

        :raise ModelError: listeners are still registered on it (QEMU asserts).
        """
        self.flatview(address_space)
        if self.listeners.listening_on(address_space):
            raise ModelError(
                f"unregister the listeners of {address_space.name!r} before destroying it"
            )
        root = address_space.root
        with self.transaction():
            address_space.root = None
        self.address_spaces.remove(address_space)
        view = self._current.pop(address_space)
        view.address_spaces.remove(address_space)
        self._ioeventfds.pop(address_space)
        address_space.root = root

    def _attach(self, a: AddressSpace) -> None:
        self.address_spaces.append(a)
        root = flatview_root(a.root)
        view = self._views.get(root)
        if view is None:
            view = self._views[root] = self._generate(root)
        self._switch(a, None, view)
        self._ioeventfds[a] = flatview_ioeventfds(view.ranges)

    # -- listeners ---------------------------------------------------------------------

    def register(self, listener: MemoryListener, address_space: AddressSpace | None = None) -> None:
        """``memory_listener_register``, then the replay of the address space's current
        view to this listener alone (``begin``, ``log_global_start`` if tracking,
        ``region_add`` + ``log_start`` per range, ``commit``; no ioeventfds in 7.2).

        With ``address_space=None`` the listener is only on the global list: it hears
        ``begin``, ``commit`` and ``log_global_*`` (QEMU always names an AS; this is a
        convenience for observers).
        """
        if id(listener) in self._listening:
            raise ModelError(f"{listener.name!r} is already registered")
        current = self.flatview(address_space).ranges if address_space is not None else []
        self._listening[id(listener)] = address_space
        self.listeners.register(
            listener, address_space, current, global_dirty_log=self._global_dirty_log
        )

    def unregister(self, listener: MemoryListener) -> None:
        """``memory_listener_unregister``: replays the removal of the current view."""
        if id(listener) not in self._listening:
            return
        a = self._listening.pop(id(listener))
        current = self.flatview(a).ranges if a is not None else []
        self.listeners.unregister(listener, current)

    # -- commit internals --------------------------------------------------------------

    def _generate(self, root: MemoryRegion | None) -> FlatView:
        """``generate_memory_topology``: render, with the dirty masks of this moment."""
        if root is None:
            return self._empty
        ranges = render(root)
        for r in ranges:
            r.dirty_log_mask = self.dirty_log_mask(r.mr)
        return FlatView(root, ranges)

    def _flatviews_reset(self) -> None:
        """Drop every view and render each distinct resolved root afresh, in AS order."""
        self._views = {None: self._empty}
        for a in self.address_spaces:
            root = flatview_root(a.root)
            if root not in self._views:
                self._views[root] = self._generate(root)

    def _set_flatview(self, a: AddressSpace) -> None:
        """``address_space_set_flatview``: both passes if the view object changed."""
        new = self._views[flatview_root(a.root)]
        old = self._current[a]
        if new is old:
            return
        if self.listeners.listening_on(a):
            self.listeners.deliver_topology(a, topology_diff(old.ranges, new.ranges))
        self._switch(a, old, new)

    def _switch(self, a: AddressSpace, old: FlatView | None, new: FlatView) -> None:
        if old is not None and a in old.address_spaces:
            old.address_spaces.remove(a)
        self._current[a] = new
        # A view lists its address spaces in creation order.
        order = {x: k for k, x in enumerate(self.address_spaces)}
        new.address_spaces.append(a)
        new.address_spaces.sort(key=lambda x: order.get(x, len(order)))

    def _update_ioeventfds(self, a: AddressSpace) -> None:
        """``address_space_update_ioeventfds``: del Forward, add Reverse, then store."""
        new = flatview_ioeventfds(self._current[a].ranges)
        old = self._ioeventfds[a]
        if self.listeners.listening_on(a):
            self.listeners.deliver_ioeventfds(a, old, new)
        self._ioeventfds[a] = new
