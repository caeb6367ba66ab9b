"""The rule table: sourced facts about QEMU's own regions that the tree text hides.

Each :class:`Rule` names a region (by name, plus what else identifies it where names
are shared), the attribute it decides, the QEMU source that sets that fact, and the
versions it holds for. :func:`qmirror.rebuild.gaps.apply_rules` applies them, only where the
text left the attribute open. Sources are QEMU 7.2 paths (Debian 1:7.2+dfsg) unless
said otherwise; docs/text-gaps.md explains the gaps (G1 … G9).
"""

from __future__ import annotations

from qmirror.core.model import RegionKind
from qmirror.rebuild.board_rules import BOARD_RULES
from qmirror.rebuild.rulebase import CONTAINER as _CONTAINER
from qmirror.rebuild.rulebase import (
    DIRTY_MEMORY_CODE,
    DIRTY_MEMORY_MIGRATION,
    DIRTY_MEMORY_VGA,
    Rule,
)
from qmirror.rebuild.rulebase import IO as _IO
from qmirror.rebuild.rulebase import has_children as _has_children
from qmirror.rebuild.rulebase import leaf as _leaf
from qmirror.rebuild.rulebase import printed_empty as _printed_empty
from qmirror.rebuild.rulebase import target_read_only as _target_read_only


__all__ = ["DIRTY_MEMORY_CODE", "DIRTY_MEMORY_MIGRATION", "DIRTY_MEMORY_VGA", "RULES", "Rule"]

#: The rule table, by gap; the survey's boards follow (board_rules).
RULES: tuple[Rule, ...] = (
    # -- G1: terminating although it has subregions --------------------------------
    Rule(
        "io-root-terminates",
        "G1",
        "io",
        "kind",
        _IO,
        "softmmu/physmem.c: memory_map_init() creates `io` with memory_region_init_io "
        "(unassigned_io_ops), 64 KiB; every gap of the I/O FlatView is `io @offset`",
        "1.0–",
    ),
    Rule(
        "rtc-terminates",
        "G1",
        "rtc",
        "kind",
        _IO,
        'hw/rtc/mc146818rtc.c: rtc_realizefn() memory_region_init_io(&s->io, …, "rtc", 2) '
        "and adds the coalesced `rtc-index` inside it",
        "2.12–",
        when=_has_children,
    ),
    Rule(
        "vga-mmio-terminates",
        "G1",
        "vga.mmio",
        "kind",
        _IO,
        "hw/display/vga-pci.c: pci_std_vga_realize() memory_region_init_io(&d->mmio, …, "
        '"vga.mmio", PCI_VGA_MMIO_SIZE) with ioport/bochs-dispi/qext subregions',
        "2.1–",
        when=_has_children,
    ),
    Rule(
        "gpex-mmio-window-terminates",
        "G1",
        r"gpex_(mmio|ioport)_window",
        "kind",
        _IO,
        "hw/pci-host/gpex.c: gpex_host_realize() memory_region_init_io(&s->io_mmio_window, "
        '…, &unassigned_io_ops, …, "gpex_mmio_window", UINT64_MAX) (likewise '
        "gpex_ioport_window, 64 KiB) with the gpex_mmio/gpex_ioport container inside",
        "6.0–",
        pattern=True,
    ),
    Rule(
        "sabre-config-terminates",
        "G1",
        "sabre-config",
        "kind",
        _IO,
        "hw/pci-host/sabre.c: sabre_init() memory_region_init_io(&s->sabre_config, …, "
        '&sabre_config_ops, …, "sabre-config", 0x10000) (sparc64 sun4u)',
        "2.12–",
        when=_has_children,
    ),
    Rule(
        "gt64120-isd-terminates",
        "G1",
        "gt64120-isd",
        "kind",
        _IO,
        "hw/pci-host/gt64120.c: gt64120_realize() memory_region_init_io(&s->ISD_mem, …, "
        '&isd_mem_ops, …, "gt64120-isd", 0x1000); the PCI host\'s pci-conf-idx/-data '
        "are mapped inside it (MIPS malta: 10.0 and 11.1 show them, 7.2 does not)",
        "5.0–",
        when=_has_children,
    ),
    Rule(
        "typhoon-pci-io-terminates",
        "G1",
        "pci0-io",
        "kind",
        _IO,
        "hw/alpha/typhoon.c: typhoon_init() memory_region_init_io(&s->pchip.reg_io, …, "
        '&alpha_pci_ignore_ops, …, "pci0-io", 32 * MiB), the PCI bus\'s I/O space: ISA '
        "ports are mapped inside it (Alpha clipper)",
        "1.3–",
        # 32 MiB: the Marvell MV64361's (pegasos2) is also called pci0-io, a 64 KiB
        # container (hw/pci-host/mv64361.c).
        when=lambda mr: mr.alias is None and mr.size == 32 << 20 and _has_children(mr),
    ),
    Rule(
        "loongarch-iocsr-terminates",
        "G1",
        "iocsr",
        "kind",
        _IO,
        "hw/loongarch/virt.c: loongarch_init() memory_region_init_io(&lams->system_iocsr, "
        '…, NULL, …, "iocsr", UINT64_MAX) with `iocsr_misc` inside',
        "7.1–",
        when=_has_children,
    ),
    Rule(
        "xtfpga-io-terminates",
        "G1",
        "xtfpga.io",
        "kind",
        _IO,
        "hw/xtensa/xtfpga.c: xtfpga_init() memory_region_init_io(system_io, …, "
        '&xtfpga_io_ops, …, "xtfpga.io", …) with the board\'s devices inside',
        "2.0–",
        when=_has_children,
    ),
    # -- G1: IOMMU regions print `i/o`; only `-d` shows ` [iommu]` --------------------
    Rule(
        "amd-iommu",
        "G1",
        "amd_iommu",
        "kind",
        RegionKind.IOMMU,
        "hw/i386/amd_iommu.c: amdvi_host_dma_iommu() memory_region_init_iommu("
        '&amdvi_dev_as->iommu, …, TYPE_AMD_IOMMU_MEMORY_REGION, …, "amd_iommu", '
        "UINT64_MAX)",
        "2.12–",
    ),
    Rule(
        "sun4u-iommu",
        "G1",
        "iommu-sun4u",
        "kind",
        RegionKind.IOMMU,
        "hw/sparc64/sun4u_iommu.c: iommu_init() memory_region_init_iommu(&s->iommu, …, "
        '"iommu-sun4u", UINT64_MAX)',
        "2.12–",
    ),
    Rule(
        "sun4m-iommu",
        "G1",
        "iommu-sun4m",
        "kind",
        RegionKind.IOMMU,
        "hw/sparc/sun4m_iommu.c: iommu_init() memory_region_init_iommu(&s->iommu, …, "
        '"iommu-sun4m", UINT64_MAX)',
        "2.12–",
    ),
    Rule(
        "spapr-tce-iommu",
        "G1",
        r"tce-iommu-[0-9a-f]+",
        "kind",
        RegionKind.IOMMU,
        "hw/ppc/spapr_iommu.c: spapr_tce_table_realize() memory_region_init_iommu("
        '&tcet->iommu, …, "tce-iommu-%x", 0), sized when a DMA window is set',
        "2.6–",
        pattern=True,
    ),
    # -- G1: containers that print as leaves -----------------------------------------
    Rule(
        "platform-bus-container",
        "G1",
        "platform bus",
        "kind",
        _CONTAINER,
        "hw/core/platform-bus.c: platform_bus_realize() memory_region_init(&pbus->mmio, …, "
        '"platform bus", pbus->mmio_size): empty until sysbus devices are plugged',
        "2.3–",
    ),
    Rule(
        "ged-memhp-container",
        "G1",
        "memhp container",
        "kind",
        _CONTAINER,
        "hw/acpi/generic_event_device.c: acpi_ged_initfn() memory_region_init("
        '&s->container_memhp, …, "memhp container", MEMORY_HOTPLUG_IO_LEN)',
        "5.0–",
    ),
    Rule(
        "spapr-tce-root-container",
        "G1",
        r"tce-root-[0-9a-f]+",
        "kind",
        _CONTAINER,
        "hw/ppc/spapr_iommu.c: spapr_tce_table_realize() memory_region_init(&tcet->root, "
        '…, "tce-root-%x", UINT64_MAX) around the `tce-iommu-%x` IOMMU region',
        "2.6–",
        pattern=True,
    ),
    Rule(
        "device-memory-container",
        "G1",
        "device-memory",
        "kind",
        _CONTAINER,
        "hw/i386/pc.c: pc_memory_init() memory_region_init(&machine->device_memory->mr, "
        '…, "device-memory", size) (hw/mem/memory-device.c: '
        "machine_memory_devices_init() from 8.1, which also gives it an address space); "
        "empty until a DIMM, NVDIMM or virtio-mem is plugged",
        "3.0–",
    ),
    Rule(
        "cxl-host-reg-container",
        "G1",
        "cxl_host_reg",
        "kind",
        _CONTAINER,
        'hw/i386/pc.c: pc_memory_init() memory_region_init(mr, …, "cxl_host_reg", '
        "cxl_size) when CXL is enabled; hw/arm/virt.c: create_cxl_host_reg_region() "
        'memory_region_init(mr, …, "cxl_host_reg", memmap[VIRT_CXL_HOST].size) (arm virt '
        "prints it by default in QEMU 11.1, not in 10.0)",
        "7.1–",
    ),
    Rule(
        "system-container",
        "G1",
        "system",
        "kind",
        _CONTAINER,
        "softmmu/physmem.c: memory_map_init() memory_region_init(system_memory, NULL, "
        '"system", UINT64_MAX)',
        "1.0–",
        when=lambda mr: mr.container is None,
    ),
    Rule(
        "gpex-mmio-container",
        "G1",
        r"gpex_(mmio|ioport)",
        "kind",
        _CONTAINER,
        "hw/pci-host/gpex.c: gpex_host_realize() memory_region_init(&s->io_mmio, …, "
        '"gpex_mmio", UINT64_MAX) and gpex_ioport (64 KiB): the PCI bus address spaces',
        "2.4–",
        pattern=True,
    ),
    Rule(
        "bus-master-container",
        "G1",
        "bus master container",
        "kind",
        _CONTAINER,
        "hw/pci/pci.c: pci_init_bus_master() memory_region_init(&dev->bus_master_container"
        '_region, …, "bus master container", UINT64_MAX); its only child, the `bus master`'
        " alias, is disabled until the guest sets Bus Master",
        "2.12–",
    ),
    Rule(
        "pci-bridge-pci-container",
        "G1",
        "pci_bridge_pci",
        "kind",
        _CONTAINER,
        "hw/pci/pci_bridge.c: pci_bridge_initfn() memory_region_init(&br->address_space_mem,"
        ' …, "pci_bridge_pci", UINT64_MAX)',
        "1.5–",
    ),
    Rule(
        "pci-bridge-io-container",
        "G1",
        "pci_bridge_io",
        "kind",
        _CONTAINER,
        "hw/pci/pci_bridge.c: pci_bridge_initfn() memory_region_init(&br->address_space_io,"
        ' …, "pci_bridge_io", 4 GiB)',
        "1.5–",
        when=lambda mr: mr.kind is not RegionKind.ALIAS,
    ),
    Rule(
        "e1000e-flash-container",
        "G1",
        "e1000e-flash",
        "kind",
        _CONTAINER,
        "hw/net/e1000e.c: e1000e_pci_realize() memory_region_init(&s->flash, …, "
        '"e1000e-flash", E1000E_FLASH_SIZE) (a BAR with nothing behind it)',
        "2.7–",
    ),
    Rule(
        "q35-smram-container",
        "G1",
        "smram",
        "kind",
        _CONTAINER,
        'hw/pci-host/q35.c: mch_realize() memory_region_init(&mch->smram, …, "smram", '
        "4 GiB); its windows are disabled until SMRAM is opened",
        "2.5–",
        when=_leaf,
    ),
    # -- G2: an alias's own read-only flag --------------------------------------------
    Rule(
        "pam-rom-readonly",
        "G2",
        "pam-rom",
        "readonly",
        True,
        "hw/pci-host/pam.c: init_pam() memory_region_set_readonly(&mem->alias[1], true)",
        "1.3–",
    ),
    Rule(
        "isa-bios-readonly",
        "G2",
        "isa-bios",
        "readonly",
        True,
        "hw/i386/x86.c: x86_bios_rom_init() memory_region_set_readonly(isa_bios, true) "
        "unless the BIOS is RAM (isapc)",
        "5.1–",
        when=_target_read_only,
    ),
    Rule(
        "isa-bios-flash-alias-readonly",
        "G2",
        "isa-bios",
        "readonly",
        True,
        "hw/i386/pc_sysfw.c: pc_system_flash_map() x86_isa_bios_init(&x86ms->isa_bios, "
        "rom_memory, flash_mem, true) for machine types with isa_bios_alias; "
        "hw/i386/x86-common.c: x86_isa_bios_init() memory_region_set_readonly(isa_bios, "
        "read_only) (before 9.1 the flash's last 128 KiB was copied into a ROM)",
        "9.1–",
        when=lambda mr: mr.alias is not None and mr.final_target().kind is RegionKind.ROMD,
    ),
    # -- G4: size 0 printed like size 1 -------------------------------------------------
    Rule(
        "pci-bridge-window-closed",
        "G4",
        r"pci_bridge_(pref_)?mem|pci_bridge_io",
        "size",
        0,
        "hw/pci/pci_bridge.c: pci_bridge_init_alias() maps a window of size "
        "limit + 1 - base, or 0 when limit < base (closed); an open window is at least "
        "4 KiB (I/O) or 1 MiB (memory)",
        "1.5–",
        pattern=True,
        when=lambda mr: mr.kind is RegionKind.ALIAS and _printed_empty(mr),
    ),
    Rule(
        "tseg-window-empty",
        "G4",
        r"tseg-window|tseg-blackhole",
        "size",
        0,
        "hw/pci-host/q35.c: mch_realize() creates TSEG with size 0 until the guest "
        "programs ESMRAMC",
        "2.5–",
        pattern=True,
        when=_printed_empty,
    ),
    # -- G8: dirty logging ------------------------------------------------------------------
    Rule(
        "vga-vram-dirty-log",
        "G8",
        "vga.vram",
        "dirty_log_mask",
        DIRTY_MEMORY_VGA,
        "hw/display/vga.c: vga_common_init() memory_region_set_log(&s->vram, true, "
        "DIRTY_MEMORY_VGA)",
        "1.3–",
        when=lambda mr: mr.is_ram,
    ),
    *BOARD_RULES,
)
