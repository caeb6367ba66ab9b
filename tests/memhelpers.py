"""Helpers for the listener, memory and KVM tests: a recording listener, a small PC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qmirror.core.model import AddressSpace, MemoryRegion
from qmirror.sim.listener import MemoryListener, Section
from qmirror.sim.memory import UINT64_MAX, MemorySystem


class Recorder(MemoryListener):
    """Writes every callback into a shared log as ``(callback, tag, details...)``."""

    def __init__(self, log: list[tuple[Any, ...]], tag: str, priority: int = 0) -> None:
        super().__init__(priority)
        self.log = log
        self.tag = tag

    def _r(self, name: str, s: Section, *more: Any) -> None:
        label = s.mr.label if s.mr is not None else None
        self.log.append((name, self.tag, label, s.offset_within_address_space, s.size, *more))

    def begin(self) -> None:
        self.log.append(("begin", self.tag))

    def commit(self) -> None:
        self.log.append(("commit", self.tag))

    def region_add(self, section: Section) -> None:
        self._r("region_add", section)

    def region_del(self, section: Section) -> None:
        self._r("region_del", section)

    def region_nop(self, section: Section) -> None:
        self._r("region_nop", section)

    def log_start(self, section: Section, old: int, new: int) -> None:
        self._r("log_start", section, old, new)

    def log_stop(self, section: Section, old: int, new: int) -> None:
        self._r("log_stop", section, old, new)

    def eventfd_add(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        self._r("eventfd_add", section, match_data, data, notifier)

    def eventfd_del(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        self._r("eventfd_del", section, match_data, data, notifier)

    def log_global_start(self) -> None:
        self.log.append(("log_global_start", self.tag))

    def log_global_stop(self) -> None:
        self.log.append(("log_global_stop", self.tag))


@dataclass
class PC:
    """A PC-like low memory: RAM, a BIOS behind PCI and one PAM segment (0xf0000)."""

    mem: MemorySystem
    system: MemoryRegion
    ram: MemoryRegion
    bios: MemoryRegion
    pam_pci: MemoryRegion
    pam_rom: MemoryRegion
    pam_ram: MemoryRegion
    io: MemoryRegion
    memory: AddressSpace
    io_as: AddressSpace


def small_pc(mem: MemorySystem | None = None) -> PC:
    mem = mem if mem is not None else MemorySystem()
    system = mem.init_container("system", UINT64_MAX)
    ram = mem.init_ram("pc.ram", 0x8000000)
    mem.add_subregion(system, 0, mem.init_alias("ram-below-4g", ram, 0, 0x8000000))
    pci = mem.init_container("pci", UINT64_MAX)
    mem.add_subregion(system, 0, pci, priority=-1)
    bios = mem.init_rom("pc.bios", 0x10000)
    isa_bios = mem.init_alias("isa-bios", bios, 0, 0x10000)
    mem.set_readonly(isa_bios, True)
    mem.add_subregion(pci, 0xF0000, isa_bios, priority=1)
    # i440FX's four PAM aliases for one segment, all priority 1, only one enabled.
    pam_pci = mem.init_alias("pam-pci", pci, 0xF0000, 0x10000)
    pam_rom = mem.init_alias("pam-rom", ram, 0xF0000, 0x10000)
    mem.set_readonly(pam_rom, True)
    pam_ram = mem.init_alias("pam-ram", ram, 0xF0000, 0x10000)
    for alias in (pam_rom, pam_ram):
        mem.set_enabled(alias, False)
    for alias in (pam_pci, pam_rom, pam_ram):
        mem.add_subregion(system, 0xF0000, alias, priority=1)
    io = mem.init_io("io", 0x10000)
    memory = mem.address_space_init(system, "memory")
    io_as = mem.address_space_init(io, "I/O")
    return PC(mem, system, ram, bios, pam_pci, pam_rom, pam_ram, io, memory, io_as)
