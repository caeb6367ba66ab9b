"""Sourced rules for the boards the machine survey (docs/machines-X.Y.md) found open.

Same form as :data:`qmirror.rebuild.rules.RULES`, which appends these. Each was found
as a name that QEMU's ``-f`` had to settle on several machine types (the survey's
"Rule gaps"), agreed with the harvested tables of every version that has the key, and
was then confirmed in QEMU's source: the citation names the file and the function
that creates the region and with which ``memory_region_init*`` call. Paths are QEMU's
current tree unless a version is named.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from qmirror.core.model import MemoryRegion
from qmirror.rebuild.rulebase import CONTAINER, IO, Rule, has_children, leaf


def _terminating(mr: MemoryRegion) -> bool:
    """A region (not an alias) that shows subregions: the text reads it as a container."""
    return mr.alias is None and has_children(mr)


def _empty(mr: MemoryRegion) -> bool:
    """A region (not an alias) that shows no subregions: the text reads it as MMIO."""
    return mr.alias is None and leaf(mr)


def _sized(size: int) -> Callable[[MemoryRegion], bool]:
    def test(mr: MemoryRegion) -> bool:
        return _empty(mr) and mr.size == size

    return test


def _overlapped_by(name: str) -> Callable[[MemoryRegion], bool]:
    """A region that an equal-priority sibling called ``name`` overlaps (G3)."""

    def test(mr: MemoryRegion) -> bool:
        parent = mr.container
        return parent is not None and any(
            s.label == name
            and s.priority == mr.priority
            and s.addr < mr.addr + mr.size
            and mr.addr < s.addr + s.size
            for s in parent.subregions
        )

    return test


#: /machine/unattached/device[N]: N counts up as devices without a parent are realized.
_UNATTACHED = re.compile(r"/machine/unattached/device\[([0-9]+)\]")


def _unattached_index(mr: MemoryRegion) -> int | None:
    own = mr.ownership.owner if mr.ownership is not None else None
    if own is None or own.key != "path":
        return None
    found = _UNATTACHED.fullmatch(own.value)
    return int(found.group(1)) if found else None


def _unimp_rival(mr: MemoryRegion) -> MemoryRegion | None:
    """The sibling an unimplemented device's region overlaps (its open G3 fact names
    it), where both are prio -1000 regions of devices numbered under /machine/unattached."""
    f = mr.fact("order")
    parent = mr.container
    if f is None or parent is None or mr.priority != -1000 or _unattached_index(mr) is None:
        return None
    name = f.value.partition(" ")[2]
    for s in parent.subregions:
        if s is not mr and s.label == name and s.priority == -1000:
            return s if _unattached_index(s) is not None else None
    return None


def _unimp_order(mr: MemoryRegion) -> str:
    """``below``/``above`` the rival; the whole group of such siblings is put in
    creation order at once (newest first, in the slots they held), since pairwise
    swaps of three or more overlapping regions need not end in that order."""
    rival = _unimp_rival(mr)
    assert rival is not None and mr.container is not None
    subs = mr.container.subregions
    slots = [
        i for i, k in enumerate(subs) if k.priority == -1000 and _unattached_index(k) is not None
    ]
    group = sorted((subs[i] for i in slots), key=lambda k: -(_unattached_index(k) or 0))
    for i, k in zip(slots, group, strict=True):
        subs[i] = k
    mine, theirs = _unattached_index(mr), _unattached_index(rival)
    assert mine is not None and theirs is not None
    return f"{'below' if mine < theirs else 'above'} {rival.label}"


_GIB = 1 << 30

BOARD_RULES: tuple[Rule, ...] = (
    # -- G1: MMIO regions with the device's own registers mapped inside ---------------
    Rule(
        "aspeed-i2c-terminates",
        "G1",
        "aspeed.i2c",
        "kind",
        IO,
        "hw/i2c/aspeed_i2c.c: aspeed_i2c_realize() memory_region_init_io(&s->iomem, …, "
        '&aspeed_i2c_ctrl_ops, …, "aspeed.i2c", 0x1000; aic->mem_size later) and maps '
        "each bus's registers inside it",
        "2.10–",
        when=_terminating,
    ),
    Rule(
        "aspeed-sdhci-terminates",
        "G1",
        "aspeed.sdhci",
        "kind",
        IO,
        "hw/sd/aspeed_sdhci.c: aspeed_sdhci_realize() memory_region_init_io(&sdhci->iomem, "
        "…, &aspeed_sdhci_ops, …, TYPE_ASPEED_SDHCI, 0x1000) and adds each slot's "
        "sdhci iomem inside it",
        "5.0–",
        when=_terminating,
    ),
    Rule(
        "aspeed-smc-flash-terminates",
        "G1",
        r"aspeed\.smc\.flash|aspeed\.(fmc|spi[0-9]?)-ast[0-9]+\.flash",
        "kind",
        IO,
        "hw/ssi/aspeed_smc.c: aspeed_smc_realize() memory_region_init_io(&s->mmio_flash, "
        '…, &aspeed_smc_flash_default_ops, …, TYPE_ASPEED_SMC ".flash", '
        "flash_window_size) with one region per chip select inside (before 6.1 named "
        '"%s.flash" after the controller, e.g. aspeed.fmc-ast2500.flash)',
        "2.7–",
        pattern=True,
        when=_terminating,
    ),
    Rule(
        "fsi-cfam-terminates",
        "G1",
        "cfam",
        "kind",
        IO,
        "hw/fsi/cfam.c: fsi_cfam_realize() memory_region_init_io(&cfam->mr, …, "
        "&fsi_cfam_unimplemented_ops, …, TYPE_FSI_CFAM, 2 MiB) with cfam.config, the "
        "slave's registers and the local bus inside",
        "9.0–",
        when=_terminating,
    ),
    Rule(
        "aspeed-pcie-window-terminates",
        "G1",
        r"pcie\.[0-9]+\.(mmio|ioport)_window",
        "kind",
        IO,
        "hw/pci-host/aspeed_pcie.c: aspeed_pcie_rc_realize() memory_region_init_io("
        '&rc->mmio_window, …, &unassigned_io_ops, …, "pcie.%d.mmio_window", UINT64_MAX) '
        "(likewise pcie.%d.ioport_window, 64 KiB) with the mmio/io containers inside",
        "10.1–",
        pattern=True,
        when=_terminating,
    ),
    Rule(
        "ahci-terminates",
        "G1",
        "ahci",
        "kind",
        IO,
        "hw/ide/ahci.c: ahci_init() memory_region_init_io(&s->mem, …, &ahci_mem_ops, …, "
        '"ahci", AHCI_MEM_BAR_SIZE); hw/ide/ahci-allwinner.c: allwinner_ahci_init() maps '
        "its `allwinner-ahci` registers inside it",
        "2.2–",
        when=_terminating,
    ),
    Rule(
        "articia-terminates",
        "G1",
        "articia",
        "kind",
        IO,
        "hw/pci-host/articia.c: articia_realize() memory_region_init_io(&s->reg, …, "
        "&articia_reg_ops, …, TYPE_ARTICIA, 0x1000000) with pci-io inside at priority 1 "
        "(amigaone; the 4-byte GPIO region of the same name has no subregions)",
        "9.0–",
        when=_terminating,
    ),
    Rule(
        "pci-isa-mmio-terminates",
        "G1",
        r"(unin-)?pci-isa-mmio",
        "kind",
        IO,
        "hw/pci-host/grackle.c: grackle_init() memory_region_init_io(&s->pci_io, …, "
        '&unassigned_io_ops, …, "pci-isa-mmio", 0x00200000); hw/pci-host/uninorth.c: '
        'pci_unin_init() likewise "unin-pci-isa-mmio" (8 MiB); hw/pci-host/astro.c: '
        'elroy_pcihost_realize() likewise "pci-isa-mmio": the PCI I/O space with the '
        "ISA ports inside (g3beige, mac99, hppa C3700)",
        "2.1–",
        pattern=True,
        when=_terminating,
    ),
    Rule(
        "astro-terminates",
        "G1",
        "astro",
        "kind",
        IO,
        "hw/pci-host/astro.c: astro_realize() memory_region_init_io(&s->this_mem, …, "
        '&astro_chip_ops, …, "astro", 0x40000) with the Elroy PCI hosts inside (hppa '
        "C3700, A400)",
        "9.0–",
        when=_terminating,
    ),
    Rule(
        "elroy-terminates",
        "G1",
        r"elroy[0-9]*",
        "kind",
        IO,
        "hw/pci-host/astro.c: elroy_pcihost_realize() memory_region_init_io("
        '&s->this_mem, …, &elroy_chip_ops, …, "elroy", 0x2000) with pci-conf-idx/-data '
        "inside (QEMU 11.1 prints them numbered, elroy0…elroy3)",
        "9.0–",
        pattern=True,
        when=_terminating,
    ),
    Rule(
        "dino-terminates",
        "G1",
        "dino",
        "kind",
        IO,
        "hw/pci-host/dino.c: dino_pcihost_realize() (dino_pcihost_init() and "
        "hw/hppa/dino.c: dino_init() before 8.0) memory_region_init_io(&s->this_mem, …, "
        '&dino_chip_ops, …, "dino", 4096) with pci-conf-idx/-data inside (hppa B160L)',
        "3.0–",
        when=_terminating,
    ),
    # -- G1: containers with nothing in them yet (print as leaves) --------------------
    Rule(
        "versatile-pci-space-container",
        "G1",
        r"pci_(io|mem)",
        "kind",
        CONTAINER,
        "hw/pci-host/versatile.c: pci_vpb_realize() memory_region_init(&s->pci_io_space, "
        '…, "pci_io", 4 GiB) and pci_mem (4 GiB): the PCI bus address spaces, empty '
        "without PCI devices (versatile, realview)",
        "1.6–",
        pattern=True,
        when=_sized(4 * _GIB),
    ),
    Rule(
        "isa-mem-container",
        "G1",
        "isa-mem",
        "kind",
        CONTAINER,
        "hw/ppc/pnv_lpc.c: pnv_lpc_realize() memory_region_init(&lpc->isa_mem, …, "
        '"isa-mem", ISA_MEM_SIZE); hw/mips/jazz.c: mips_jazz_init() '
        'memory_region_init(isa_mem, NULL, "isa-mem", 0x01000000): ISA memory space, '
        "empty without ISA memory devices",
        "2.7–",
        when=_empty,
    ),
    Rule(
        "e500-pci-pio-container",
        "G1",
        "pci-pio",
        "kind",
        CONTAINER,
        "hw/pci-host/ppce500.c: e500_pcihost_realize() memory_region_init(&s->pio, …, "
        '"pci-pio", PCIE500_PCI_IOLEN): the PCI I/O space (ppce500, mpc8544ds)',
        "2.1–",
        when=_empty,
    ),
    Rule(
        "pci-bus-memory-container",
        "G1",
        "pci bus memory",
        "kind",
        CONTAINER,
        "hw/pci-host/ppce500.c: e500_pcihost_realize() memory_region_init(&s->busmem, …, "
        '"pci bus memory", UINT64_MAX) (pci-pio inside); hw/ppc/ppc440_pcix.c: '
        'ppc440_pcix_realize() memory_region_init(&s->busmem, …, "pci bus memory", '
        "UINT64_MAX) before 8.0 (sam460ex): PCI bus memory, empty without devices",
        "3.1–",
        when=_empty,
    ),
    Rule(
        "ppc440-pcix-memory-container",
        "G1",
        "pci-mem",
        "kind",
        CONTAINER,
        "hw/ppc/ppc440_pcix.c: ppc440_pcix_realize() memory_region_init(&s->busmem, …, "
        '"pci-mem", UINT64_MAX) from 8.0 (sam460ex)',
        "8.0–",
        when=_sized(1 << 64),
    ),
    Rule(
        "ppc440-pcix-io-container",
        "G1",
        "pci-io",
        "kind",
        CONTAINER,
        "hw/ppc/ppc440_pcix.c: ppc440_pcix_realize() memory_region_init(&s->iomem, …, "
        '"pci-io", 64 * KiB) from 8.0 (sam460ex)',
        "8.0–",
        when=_sized(0x10000),
    ),
    Rule(
        "pci-mmio-container",
        "G1",
        r"(unin-)?pci-mmio",
        "kind",
        CONTAINER,
        "hw/pci-host/astro.c: elroy_pcihost_realize() memory_region_init(&s->pci_mmio, "
        '…, "pci-mmio", UINT64_MAX); hw/pci-host/grackle.c: grackle_init() and '
        "hw/pci-host/uninorth.c: pci_unin_init() likewise (4 GiB): PCI bus memory, "
        "empty without devices",
        "2.1–",
        pattern=True,
        when=_empty,
    ),
    Rule(
        "dino-pci-memory-container",
        "G1",
        "pci-memory",
        "kind",
        CONTAINER,
        "hw/pci-host/dino.c: dino_pcihost_realize() memory_region_init(&s->pci_mem, …, "
        '"pci-memory", 4 * GiB): PCI bus memory behind the outbound windows (hppa B160L)',
        "3.0–",
        when=_sized(4 * _GIB),
    ),
    Rule(
        "mv64361-pci-space-container",
        "G1",
        r"pci[01]-(io|mem)",
        "kind",
        CONTAINER,
        "hw/pci-host/mv64361.c: mv64361_pcihost_realize() memory_region_init(&s->io, …, "
        '"pci%d-io", 0x10000) and memory_region_init(&s->mem, …, "pci%d-mem", 4 GiB): '
        "the PCI spaces of the Marvell host bridges, empty without devices (pegasos2)",
        "6.0–",
        pattern=True,
        when=_empty,
    ),
    Rule(
        "pnv-xive-vc-container",
        "G1",
        r"xive-vc-(end|ipi)",
        "kind",
        CONTAINER,
        "hw/intc/pnv_xive.c: pnv_xive_realize() memory_region_init(&xive->ipi_mmio, …, "
        '"xive-vc-ipi", PNV9_XIVE_VC_SIZE) and xive-vc-end: roots of their own address '
        "spaces, empty until firmware sets the EDT (powernv9)",
        "4.0–",
        pattern=True,
        when=_empty,
    ),
    Rule(
        "bcm2838-peripherals-container",
        "G1",
        "bcm2838-peripherals",
        "kind",
        CONTAINER,
        "hw/arm/bcm2838_peripherals.c: bcm2838_peripherals_init() memory_region_init("
        '&s->peri_low_mr, obj, "bcm2838-peripherals", peri_low_size) (raspi4b)',
        "9.0–",
        when=_empty,
    ),
    Rule(
        "pci-memory-root-container",
        "G1",
        "pci",
        "kind",
        CONTAINER,
        "hw/remote/machine.c: remote_machine_init() memory_region_init(pci_memory, NULL, "
        '"pci", UINT64_MAX) (x-remote; hw/i386/pc_piix.c pc_init1() and pc_q35.c '
        "pc_q35_init() create the same, with the ROMs inside)",
        "6.0–",
        when=_sized(1 << 64),
    ),
    # -- G3: which of two overlapping equal-priority siblings was added last ----------
    Rule(
        "hexagon-ddr-over-config-table",
        "G3",
        "config_table.rom",
        "order",
        "below ddr.ram",
        "hw/hexagon/hexagon_dsp.c: hexagon_common_init() adds config_table.rom "
        "(memory_region_init_rom) to system memory before ddr.ram "
        "(memory_region_init_ram, at 0, prio 0): the later sibling wins the overlap, so "
        "the RAM covers the config table in the FlatView (V66G_1024)",
        "11.0–",
        # V66G_1024's config table sits at 0xd8180000; hexagon `virt` maps ddr.ram
        # first and its config table (at 0xde000000) wins there.
        when=lambda mr: mr.addr == 0xD8180000 and _overlapped_by("ddr.ram")(mr),
    ),
    Rule(
        "unimplemented-device-order",
        "G3",
        "",
        "order",
        _unimp_order,
        "include/hw/misc/unimp.h: create_unimplemented_device() realizes the device "
        "(hw/core/qdev.c: device_set_realized() names a parentless one "
        "/machine/unattached/device[N], N counting up) and maps it at once with "
        "sysbus_mmio_map_overlap(…, -1000): of two overlapping such regions the higher N "
        "was added last and wins (owners from `info mtree -o`; imx8mp/imx8mm vpu, npu)",
        "5.0–",
        when=lambda mr: _unimp_rival(mr) is not None,
    ),
    Rule(
        "ast2600-gpio-1v8-over-rtc",
        "G3",
        "aspeed-rtc",
        "order",
        "below aspeed.gpio",
        "hw/arm/aspeed_ast2600.c: aspeed_soc_ast2600_realize() maps the RTC right after "
        "the SCU and the 1.8 V GPIO controller (aspeed.gpio) much later, after XDMA and "
        "the 3.3 V one (the order of the 5.1 conversion to sysbus_realize() and of today); "
        "QEMU 5.2's 1.8 V GPIO window (0x9d8 bytes from 0x1e780800) reaches over the RTC "
        "at equal priority, so the GPIO wins there (ast2600-evb, tacoma-bmc)",
        "5.0–",
        when=_overlapped_by("aspeed.gpio"),
    ),
)
