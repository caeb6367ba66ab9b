"""The renderer on machines built in code, against results derived by hand.

Each expectation is worked out from QEMU's algorithm as the reference describes it
(docs/memory-semantics-notes.md §2.6 worked examples, §2.3, §3.1), not taken from our output.
"""

from __future__ import annotations

import pytest

from qmirror.core.model import (
    SIZE_2_64,
    AddressSpace,
    Machine,
    MemoryRegion,
    RegionKind,
    alias,
    container,
    io,
    ram,
    rom,
)
from qmirror.core.render import flatview_root, render, render_machine
from qmirror.errors import ModelError


Row = tuple[int, int, str, int, bool]  # start, size, region name, offset, readonly


def rows(root: MemoryRegion) -> list[Row]:
    return [(r.start, r.size, r.mr.label, r.offset_in_region, r.readonly) for r in render(root)]


def test_holes_in_a_container_docs_example() -> None:
    """§2.6 example 1 (docs/devel/memory.rst): containers are transparent in their holes."""
    a = container("A", 0x8000)
    c = io("C", 0x6000)
    b = container("B", 0x4000)
    d = io("D", 0x1000)
    e = io("E", 0x1000)
    b.add_subregion(d, 0)
    b.add_subregion(e, 0x2000)
    a.add_subregion(c, 0, priority=1)
    a.add_subregion(b, 0x2000, priority=2)
    assert rows(a) == [
        (0x0000, 0x2000, "C", 0x0000, False),
        (0x2000, 0x1000, "D", 0x0000, False),
        (0x3000, 0x1000, "C", 0x3000, False),
        (0x4000, 0x1000, "E", 0x0000, False),
        (0x5000, 0x1000, "C", 0x5000, False),
    ]


def test_terminating_b_fills_its_own_holes() -> None:
    """§2.6 example 1, variant: B as MMIO fills its holes itself."""
    a = container("A", 0x8000)
    c = io("C", 0x6000)
    b = io("B", 0x4000)
    b.add_subregion(io("D", 0x1000), 0)
    b.add_subregion(io("E", 0x1000), 0x2000)
    a.add_subregion(c, 0, priority=1)
    a.add_subregion(b, 0x2000, priority=2)
    assert rows(a) == [
        (0x0000, 0x2000, "C", 0x0000, False),
        (0x2000, 0x1000, "D", 0x0000, False),
        (0x3000, 0x1000, "B", 0x1000, False),
        (0x4000, 0x1000, "E", 0x0000, False),
        (0x5000, 0x1000, "B", 0x3000, False),
    ]


def _q35_bios_area() -> MemoryRegion:
    """system ⊃ pci (prio -1) ⊃ pc.bios, isa-bios; five pam-pci windows onto pci (prio 1)."""
    system = container("system", SIZE_2_64)
    pci = container("pci", SIZE_2_64)
    bios = rom("pc.bios", 0x40000)
    isa_bios = alias("isa-bios", bios, 0x20000, 0x20000, readonly=True)
    pci.add_subregion(bios, 0xFFFC0000)
    pci.add_subregion(isa_bios, 0xE0000, priority=1)
    system.add_subregion(pci, 0, priority=-1)
    for start, size in (
        (0xE0000, 0x4000),
        (0xE4000, 0x4000),
        (0xE8000, 0x4000),
        (0xEC000, 0x4000),
        (0xF0000, 0x10000),
    ):
        system.add_subregion(alias("pam-pci", pci, start, size), start, priority=1)
    return system


def test_negative_base_through_an_alias_merges() -> None:
    """§2.6 example 2: base goes negative inside isa-bios; five pieces merge into one."""
    got = rows(_q35_bios_area())
    assert got == [
        (0xE0000, 0x20000, "pc.bios", 0x20000, True),
        (0xFFFC0000, 0x40000, "pc.bios", 0, True),
    ]
    assert render(_q35_bios_area())[0].mr.priority == 0  # the terminating region's prio


def test_pam_readonly_through_an_alias_does_not_merge() -> None:
    """§2.6 example 3: PAM0=0x10, PAM1=0x33 on pc."""
    system = container("system", SIZE_2_64)
    pc_ram = ram("pc.ram", 0x8000000)
    system.add_subregion(alias("ram-below-4g", pc_ram, 0, 0x8000000), 0)
    pci = container("pci", SIZE_2_64)
    system.add_subregion(pci, 0, priority=-1)
    pci.add_subregion(rom("pc.rom", 0x20000), 0xC0000, priority=1)
    bios = rom("pc.bios", 0x40000)
    pci.add_subregion(bios, 0xFFFC0000)
    pci.add_subregion(alias("isa-bios", bios, 0x20000, 0x20000, readonly=True), 0xE0000, 1)
    # Segments as PAM leaves them: c0000/c4000 RAM, c8000..ec000 PCI, f0000 read-only RAM.
    system.add_subregion(alias("pam-ram", pc_ram, 0xC0000, 0x4000), 0xC0000, 1)
    system.add_subregion(alias("pam-ram", pc_ram, 0xC4000, 0x4000), 0xC4000, 1)
    for seg in range(0xC8000, 0xF0000, 0x4000):
        system.add_subregion(alias("pam-pci", pci, seg, 0x4000), seg, 1)
    system.add_subregion(alias("pam-rom", pc_ram, 0xF0000, 0x10000, readonly=True), 0xF0000, 1)
    assert rows(system) == [
        (0x00000, 0xC8000, "pc.ram", 0, False),
        (0xC8000, 0x18000, "pc.rom", 0x8000, True),
        (0xE0000, 0x10000, "pc.bios", 0x20000, True),
        (0xF0000, 0x10000, "pc.ram", 0xF0000, True),
        (0x100000, 0x7F00000, "pc.ram", 0x100000, False),
        (0xFFFC0000, 0x40000, "pc.bios", 0, True),
    ]


def test_terminating_root_fills_gaps_around_a_punched_hole() -> None:
    """§2.6 example 4: lpc-reset-control (prio 1) punches pci-conf-idx; `io` fills the rest."""
    io_root = io("io", 0x10000)
    io_root.add_subregion(io("pci-conf-idx", 4), 0xCF8)
    io_root.add_subregion(io("lpc-reset-control", 1), 0xCF9, priority=1)
    io_root.add_subregion(io("pci-conf-data", 4), 0xCFC)
    got = rows(io_root)
    assert got == [
        (0x0, 0xCF8, "io", 0, False),
        (0xCF8, 1, "pci-conf-idx", 0, False),
        (0xCF9, 1, "lpc-reset-control", 0, False),
        (0xCFA, 2, "pci-conf-idx", 2, False),
        (0xCFC, 4, "pci-conf-data", 0, False),
        (0xD00, 0x10000 - 0xD00, "io", 0xD00, False),
    ]


def test_iommu_with_an_alias_child() -> None:
    """§2.6 example 5: a 2**64 IOMMU region with vtd-ir at 0xfee00000."""
    nodmar = container("vtd-nodmar", SIZE_2_64)
    dmar = MemoryRegion("vtd-00.0-dmar", RegionKind.IOMMU, SIZE_2_64)
    ir = io("intel_iommu_ir", 0x100000)
    dmar.add_subregion(alias("vtd-ir", ir, 0, 0x100000), 0xFEE00000, priority=1)
    root = container("vtd-00.0", SIZE_2_64)
    root.add_subregion(dmar, 0)
    root.add_subregion(alias("vtd-nodmar", nodmar, 0, SIZE_2_64), 0)
    assert rows(dmar) == [
        (0, 0xFEE00000, "vtd-00.0-dmar", 0, False),
        (0xFEE00000, 0x100000, "intel_iommu_ir", 0, False),
        (0xFEF00000, SIZE_2_64 - 0xFEF00000, "vtd-00.0-dmar", 0xFEF00000, False),
    ]


def test_higher_priority_subtree_wins_whatever_the_grandchildren_say() -> None:
    """§2.3 item 2: priorities are local to siblings."""
    root = container("root", 0x10000)
    high = container("high", 0x10000)
    high.add_subregion(io("deep", 0x1000), 0x1000, priority=-100)
    low = io("low", 0x10000)
    low.add_subregion(io("vip", 0x1000), 0x1000, priority=1000)
    root.add_subregion(low, 0, priority=0)
    root.add_subregion(high, 0, priority=1)
    got = rows(root)
    assert (0x1000, 0x1000, "deep", 0, False) in got
    assert all(r[2] != "vip" for r in got)


def test_equal_priority_overlap_newest_wins_and_set_address_makes_newest() -> None:
    """§1.3: among equal priorities the most recently added comes first and wins."""
    root = container("root", 0x10000)
    a = io("a", 0x2000)
    b = io("b", 0x2000)
    root.add_subregion(a, 0x1000)
    root.add_subregion(b, 0x2000)
    assert rows(root) == [(0x1000, 0x1000, "a", 0, False), (0x2000, 0x2000, "b", 0, False)]
    root.del_subregion(a)  # re-adding = memory_region_set_address
    root.add_subregion(a, 0x1000)
    assert rows(root) == [(0x1000, 0x2000, "a", 0, False), (0x3000, 0x1000, "b", 0x1000, False)]


def test_disabled_container_hides_its_children() -> None:
    root = io("io", 0x100)
    pm = container("pm", 0x80, enabled=False)
    pm.add_subregion(io("evt", 4), 0)
    root.add_subregion(pm, 0)
    assert rows(root) == [(0, 0x100, "io", 0, False)]


def test_zero_size_and_alias_to_disabled_render_nothing() -> None:
    root = container("root", 0x10000)
    root.add_subregion(io("zero", 0), 0x100)
    target = ram("t", 0x1000, enabled=False)
    root.add_subregion(alias("to-disabled", target, 0, 0x1000), 0x2000)
    assert rows(root) == []


def test_clipping_by_the_container_and_the_alias_window() -> None:
    """A child sticking out of its container is cut at the container's end (§2.3 item 5)."""
    root = container("root", 0x10000)
    sub = container("sub", 0x1000)
    r = ram("r", 0x10000)
    sub.add_subregion(alias("big", r, 0x100, 0x2000), 0x800)
    root.add_subregion(sub, 0x2000)
    assert rows(root) == [(0x2800, 0x800, "r", 0x100, False)]


def test_region_beyond_2_64_is_clipped() -> None:
    root = container("system", SIZE_2_64)
    root.add_subregion(io("all", SIZE_2_64), 0, priority=-1)
    root.add_subregion(io("over", 0x20000), 0xFFFFFFFFFFFF0000)
    assert rows(root) == [
        (0, 0xFFFFFFFFFFFF0000, "all", 0, False),
        (0xFFFFFFFFFFFF0000, 0x10000, "over", 0, False),
    ]


def test_nonvolatile_and_readonly_propagate_along_the_path() -> None:
    root = container("dm", 0x100000)
    nv1 = ram("nv1", 0x10000)
    root.add_subregion(alias("nvdimm-memory", nv1, 0, 0x10000, nonvolatile=True), 0)
    got = render(root)
    assert [(r.mr.label, r.nonvolatile, r.readonly) for r in got] == [("nv1", True, False)]


def test_flatview_root_resolution_and_sharing() -> None:
    """§3.1: bus-master ASes share the empty view; full aliases resolve to their target."""
    system = container("system", SIZE_2_64)
    system.add_subregion(ram("ram", 0x1000), 0)
    system.add_subregion(io("mmio", 0x1000), 0x10000)  # two children: system is the root
    bm = container("bus master container", SIZE_2_64)
    bm.add_subregion(alias("bus master", system, 0, SIZE_2_64, enabled=False), 0)
    bm2 = container("bus master container", SIZE_2_64)
    bm2.add_subregion(alias("bus master", system, 0, SIZE_2_64), 0)  # bus mastering on
    smm = container("memory", SIZE_2_64)
    smm.add_subregion(alias("memory", system, 0, SIZE_2_64), 0)
    assert flatview_root(bm) is None
    assert flatview_root(bm2) is system
    assert flatview_root(smm) is system
    m = Machine(
        [
            AddressSpace("memory", system),
            AddressSpace("dev0", bm),
            AddressSpace("dev1", bm2),
            AddressSpace("cpu-smm-0", smm),
        ]
    )
    views = render_machine(m)
    assert [[a.name for a in v.address_spaces] for v in views] == [
        ["memory", "dev1", "cpu-smm-0"],
        ["dev0"],
    ]
    assert views[1].root is None and views[1].ranges == []


def test_single_child_covering_from_zero_becomes_the_root() -> None:
    """§3.1: a container with one enabled child at 0 that it covers resolves to the child."""
    system = container("system", SIZE_2_64)
    r = ram("ram", 0x1000)
    system.add_subregion(r, 0)
    system.add_subregion(io("off", 0x1000, enabled=False), 0x10000)
    assert flatview_root(system) is r
    system.add_subregion(io("mmio", 0x1000), 0x20000)
    assert flatview_root(system) is system


def test_partial_alias_root_is_its_own_root() -> None:
    system = container("system", SIZE_2_64)
    part = alias("low", system, 0, 0x1000)
    assert flatview_root(part) is part


def test_alias_loop_is_refused_not_recursed() -> None:
    a = MemoryRegion("a", RegionKind.CONTAINER, 0x1000)
    b = alias("b", a, 0, 0x1000)
    a.kind = RegionKind.ALIAS
    a.alias = b
    with pytest.raises(ModelError, match="alias loop"):
        render_machine(Machine([AddressSpace("x", b)]))


def test_alias_cycle_through_a_container_is_refused() -> None:
    c = container("c", 0x1000)
    c.add_subregion(alias("back", c, 0, 0x1000), 0)
    with pytest.raises(ModelError, match="alias cycle"):
        render(c)
