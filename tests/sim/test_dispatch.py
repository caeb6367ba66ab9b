"""The dispatch dump (``info mtree -f -d``): built from our FlatViews, parsed, compared.

Expected outputs are QEMU's own text (live captures and the committed fixtures) or
derived by hand from physmem.c's rules (docs/memory-semantics-notes.md §4.7): the section table in
creation order and the radix tree with 9 bits per level, 6 levels for 4 KiB pages.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from livehelpers import skip_live

from qmirror.cli import main
from qmirror.core.model import SIZE_2_64, MemoryRegion, RegionKind
from qmirror.core.render import FlatRange, FlatView
from qmirror.errors import ParseError
from qmirror.live.launcher import QemuInstance
from qmirror.sim.dispatch import (
    SectionKind,
    build_dispatch,
    diff_dispatch,
    dump_dispatch,
    levels_for,
)
from qmirror.text.dispatch import format_dispatch, infer_page_bits, parse_dispatch, strip_mru
from qmirror.text.document import FlatViewBlock
from qmirror.text.flat import FlatDocument, parse_flat, print_flat
from qmirror.verify.check import check


ROOT = Path(__file__).resolve().parents[2] / "fixtures"
AARCH64 = "qemu-system-aarch64"


# -- hand-derived: tiny FlatViews ----------------------------------------------------


def region(name: str | None, kind: RegionKind = RegionKind.IO, size: int = 0x10000) -> MemoryRegion:
    return MemoryRegion(name, kind, size)


def view(root: MemoryRegion, *ranges: tuple[MemoryRegion, int, int]) -> FlatView:
    """A FlatView with the given ``(region, start, size)`` ranges, offset 0."""
    return FlatView(
        root, [FlatRange(mr, start, size, 0, False, False, True, 0) for mr, start, size in ranges]
    )


def dump_text(v: FlatView, page_bits: int = 12) -> list[str]:
    return format_dispatch(dump_dispatch(build_dispatch(v, page_bits=page_bits)))


SECTIONS_HEAD = [
    "  Dispatch",
    "    Physical sections",
    "      #0 @0000000000000000..ffffffffffffffff (noname) [unassigned]",
]


def chain(skips: list[int], target: int) -> list[str]:
    """Nodes [0]..[n-1] orphaned by compaction: entry 0 skips down to node ``target``."""
    out = []
    for i, skip in enumerate(skips):
        out += [
            f"      [{i}]",
            f"\t  0       skip={skip}  ptr=[{target}]",
            "\t  1..511  skip=1  ptr=NIL",
        ]
    return out


def test_levels_follow_the_page_size() -> None:
    assert levels_for(12) == 6  # x86, aarch64: (64 - 12 - 1) // 9 + 1
    assert levels_for(10) == 6
    assert levels_for(16) == 6
    assert levels_for(20) == 5


def test_a_small_region_in_one_page_gets_a_subpage_container_first() -> None:
    sysmem = region("system", RegionKind.CONTAINER, SIZE_2_64)
    dev = region("dev")
    # One page (index 1) set to the container; the five nodes above its leaf node
    # each have one used entry, so compaction lets the root skip straight to node 5.
    assert dump_text(view(sysmem, (dev, 0x1000, 0x10))) == [
        *SECTIONS_HEAD,
        "      #1 @0000000000001000..0000000000001fff (noname) [not dirty]",
        "      #2 @0000000000001000..000000000000100f dev [ROM]",
        "    Nodes (9 bits per level, 6 levels) ptr=[5] skip=6",
        *chain([5, 4, 3, 2, 1], 5),
        "      [5]",
        "\t  0       skip=0  ptr=#0",
        "\t  1       skip=0  ptr=#1",
        "\t  2..511  skip=0  ptr=#0",
    ]


def test_a_range_splits_into_first_subpage_whole_pages_and_last_subpage() -> None:
    sysmem = region("system", RegionKind.CONTAINER, SIZE_2_64)
    ram = region("ram", RegionKind.RAM, 0x2000)
    d = build_dispatch(view(sysmem, (ram, 0x1800, 0x2000)))
    assert [(s.start, s.size, s.kind, s.name) for s in d.sections] == [
        (0, SIZE_2_64, SectionKind.UNASSIGNED, "(noname)"),
        (0x1000, 0x1000, SectionKind.SUBPAGE, "(noname)"),
        (0x1800, 0x800, SectionKind.FIRST, "ram"),
        (0x2000, 0x1000, SectionKind.PAGES, "ram"),
        (0x3000, 0x1000, SectionKind.SUBPAGE, "(noname)"),
        (0x3000, 0x800, SectionKind.LAST, "ram"),
    ]
    lines = format_dispatch(dump_dispatch(d))
    # Ends come from the section size (7.2), not from the region's size.
    assert lines[3:8] == [
        "      #1 @0000000000001000..0000000000001fff (noname) [not dirty]",
        "      #2 @0000000000001800..0000000000001fff ram [ROM]",
        "      #3 @0000000000002000..0000000000002fff ram [watch]",
        "      #4 @0000000000003000..0000000000003fff (noname)",
        "      #5 @0000000000003000..00000000000037ff ram",
    ]
    assert lines[-5:] == [
        "\t  0       skip=0  ptr=#0",
        "\t  1       skip=0  ptr=#1",
        "\t  2       skip=0  ptr=#3",
        "\t  3       skip=0  ptr=#4",
        "\t  4..511  skip=0  ptr=#0",
    ]


def test_ranges_sharing_a_page_share_its_container() -> None:
    io = region("io", RegionKind.IO, 0x10000)
    a, b = region("a"), region("b")
    lines = dump_text(view(io, (a, 0, 8), (io, 8, 0x1FF8), (b, 0x2000, 4)))
    assert lines[2:10] == [
        "      #0 @0000000000000000..ffffffffffffffff (noname) [unassigned]",
        "      #1 @0000000000000000..0000000000000fff (noname) [not dirty]",
        "      #2 @0000000000000000..0000000000000007 a [ROM]",
        # io's own range: the rest of page 0, then page 1 whole: [ROOT] as in QEMU's
        # I/O view, where every gap is the root region `io` itself.
        "      #3 @0000000000000008..0000000000000fff io [watch] [ROOT]",
        "      #4 @0000000000001000..0000000000001fff io [ROOT]",
        "      #5 @0000000000002000..0000000000002fff (noname)",
        "      #6 @0000000000002000..0000000000002003 b",
        "    Nodes (9 bits per level, 6 levels) ptr=[5] skip=6",
    ]


def test_aligned_runs_become_leaves_high_up_and_nodes_stay_numbered() -> None:
    sysmem = region("system", RegionKind.CONTAINER, SIZE_2_64)
    ram = region("ram", RegionKind.RAM, 0x400000)
    # 2 MiB at 2 MiB: two level-1 slots (512 pages each) become leaves; no leaf node.
    lines = dump_text(view(sysmem, (ram, 0x200000, 0x400000)))
    assert lines[3:] == [
        "      #1 @0000000000200000..00000000005fffff ram [not dirty]",
        "    Nodes (9 bits per level, 6 levels) ptr=[4] skip=5",
        *chain([4, 3, 2, 1], 4),
        "      [4]",
        "\t  0       skip=1  ptr=NIL",
        "\t  1..2    skip=0  ptr=#1",
        "\t  3..511  skip=1  ptr=NIL",
    ]


def test_a_single_leaf_under_the_root_makes_the_root_a_leaf() -> None:
    sysmem = region("system", RegionKind.CONTAINER, SIZE_2_64)
    big = region("big", RegionKind.RAM, 1 << 57)
    # 2**57 bytes = 2**45 pages = one slot of the top level.
    lines = dump_text(view(sysmem, (big, 0, 1 << 57)))
    assert lines[3:] == [
        "      #1 @0000000000000000..01ffffffffffffff big [not dirty]",
        "    Nodes (9 bits per level, 6 levels) ptr=[1] skip=0",
        "      [0]",
        "\t  0       skip=0  ptr=#1",
        "\t  1..511  skip=1  ptr=NIL",
    ]


def test_the_whole_space_and_the_root_and_iommu_markers() -> None:
    whole = region("unassigned-io", RegionKind.IO, SIZE_2_64)
    lines = dump_text(view(whole, (whole, 0, SIZE_2_64)))
    assert lines[3:] == [
        "      #1 @0000000000000000..ffffffffffffffff unassigned-io [not dirty] [ROOT]",
        "    Nodes (9 bits per level, 6 levels) ptr=[0] skip=1",
        "      [0]",
        "\t  0..127  skip=0  ptr=#1",
        "\t128..511  skip=1  ptr=NIL",
    ]
    sysmem = region("system", RegionKind.CONTAINER, SIZE_2_64)
    dmar = region("dmar", RegionKind.IOMMU, 1 << 32)
    unnamed = region(None, RegionKind.IO, 0x1000)
    lines = dump_text(view(sysmem, (unnamed, 0x10000, 0x1000), (dmar, 1 << 32, 1 << 32)))
    assert lines[3:9] == [
        "      #1 @0000000000010000..0000000000010fff (noname) [not dirty]",
        "      #2 @0000000100000000..00000001ffffffff dmar [ROM] [iommu]",
        "    Nodes (9 bits per level, 6 levels) ptr=[3] skip=4",
        "      [0]",
        "\t  0       skip=3  ptr=[3]",
        "\t  1..511  skip=1  ptr=NIL",
    ]


def test_other_page_sizes() -> None:
    sysmem = region("system", RegionKind.CONTAINER, SIZE_2_64)
    dev = region("dev")
    # 1 KiB pages (ARMv5 boards): the container covers 0x400 bytes; still 6 levels.
    lines = dump_text(view(sysmem, (dev, 0x400, 0x10)), page_bits=10)
    assert lines[3:6] == [
        "      #1 @0000000000000400..00000000000007ff (noname) [not dirty]",
        "      #2 @0000000000000400..000000000000040f dev [ROM]",
        "    Nodes (9 bits per level, 6 levels) ptr=[5] skip=6",
    ]
    assert infer_page_bits([parse_dispatch(lines)]) == 10


# -- parsing ----------------------------------------------------------------------


QEMU_DUMP = [  # from QEMU 7.2 `info mtree -f -d`, pc, FlatView of "memory"
    "  Dispatch",
    "    Physical sections",
    "      #0 @0000000000000000..ffffffffffffffff (noname) [unassigned]",
    "      #1 @0000000000000000..000000000009ffff pc.ram [not dirty]",
    "      #2 @00000000000a0000..00000000000bffff vga-lowmem [ROM]",
    "      #3 @00000000000c0000..00000000000dffff pc.rom [watch]",
    "      #4 @00000000fffc0000..00000000ffffffff pc.bios [MRU]",
    "    Nodes (9 bits per level, 6 levels) ptr=[3] skip=4",
    "      [0]",
    "\t  0       skip=3  ptr=[3]",
    "\t  1..511  skip=1  ptr=NIL",
    "      [1]",
    "\t 64..511  skip=1  ptr=NIL",
]


def test_parse_reads_every_field() -> None:
    lines = QEMU_DUMP[:11]
    dump = parse_dispatch(lines, lineno=40)
    assert [s.name for s in dump.sections] == [
        "(noname)",
        "pc.ram",
        "vga-lowmem",
        "pc.rom",
        "pc.bios",
    ]
    assert [s.label for s in dump.sections] == [
        " [unassigned]",
        " [not dirty]",
        " [ROM]",
        " [watch]",
        "",
    ]
    assert dump.sections[4].mru and not dump.sections[4].root
    assert (dump.sections[3].start, dump.sections[3].end) == (0xC0000, 0xDFFFF)
    head = dump.nodes_line
    assert (head.bits, head.levels, head.ptr, head.skip) == (9, 6, 3, 4)
    assert dump.nodes[0].entries()[:2] == [(3, 3), (1, (1 << 26) - 1)]
    assert len(dump.nodes[0].entries()) == 512
    assert format_dispatch(dump) == lines


@pytest.mark.parametrize(
    ("lines", "line", "column", "reason"),
    [
        (QEMU_DUMP[:1], 41, 1, "Physical sections"),
        (
            [*QEMU_DUMP[:2], "      #0 @0000000000000000..ffffffffffffffff (noname)"],
            42,
            54,
            "QEMU labels section #0 '[unassigned]'",
        ),
        (
            [*QEMU_DUMP[:3], "      #2 @0000000000000000..000000000009ffff pc.ram [not dirty]"],
            43,
            8,
            "expected section #1",
        ),
        (
            [*QEMU_DUMP[:3], "      #1 @00000000000000..000000000009ffff pc.ram [not dirty]"],
            43,
            8,
            "16-digit",
        ),
        ([*QEMU_DUMP[:10], "\t  1..511 skip=1  ptr=NIL"], 50, 11, "entry line"),
        ([*QEMU_DUMP[:10], "\t  1..511  skip=1  ptr=#5"], 50, 24, "'#S' for skip=0"),
        (QEMU_DUMP[:10], 50, 1, "node [0] ends before entry 511"),
        (QEMU_DUMP[:11] + QEMU_DUMP[12:13], 51, 1, "expected a node line"),
        (QEMU_DUMP[:12] + QEMU_DUMP[12:13], 52, 2, "starts at entry 0"),
        ([*QEMU_DUMP[:7], "    Nodes (9 bits per level, 6 levels) ptr=[3]"], 47, 1, "Nodes"),
    ],
)
def test_parse_errors_have_line_and_column(
    lines: list[str], line: int, column: int, reason: str
) -> None:
    with pytest.raises(ParseError) as info:
        parse_dispatch(lines, lineno=40)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert reason in info.value.reason


def test_a_bad_dump_inside_a_flat_document_points_into_the_document() -> None:
    text = (
        'FlatView #0\r\n AS "I/O", root: io\r\n Root memory region: io\r\n'
        "  0000000000000000-000000000000ffff (prio 0, i/o): io\r\n"
        "  Dispatch\r\n    Physical sections\r\n"
        "      #0 @0000000000000000..ffffffffffffffff (noname) [unassigned]\r\n"
        "      #1 @0000000000000000..000000000000ffff io [not dirty] [ROOT]\r\n"
        "    Nodes (9 bits per level, 6 levels) ptr=[0] skip=6\r\n"
        "      [0]\r\n\t  0..15   skip=0  ptr=#1\r\n\t 16..511  skip=0  ptr=#0\r\n\r\n"
    )
    assert print_flat(parse_flat(text)) == text
    with pytest.raises(ParseError) as info:
        parse_flat(text.replace("  ptr=#0", "  ptr=#0 "), filename="f.txt")
    assert (info.value.line, info.value.filename) == (12, "f.txt")


# -- comparison --------------------------------------------------------------------


def test_diff_ignores_mru_and_names_what_differs() -> None:
    sysmem = region("system", RegionKind.CONTAINER, SIZE_2_64)
    dev, ram = region("dev"), region("ram", RegionKind.RAM, 0x2000)
    ours = dump_dispatch(build_dispatch(view(sysmem, (dev, 0x1000, 0x10), (ram, 0x4000, 0x2000))))
    same = parse_dispatch(format_dispatch(ours))
    assert diff_dispatch(ours, same) == []
    text = format_dispatch(ours)
    text[4] += " [MRU]"
    assert diff_dispatch(ours, parse_dispatch(text)) == []
    # QEMU without the subpage container: every later section shifts.
    shifted = parse_dispatch(
        format_dispatch(dump_dispatch(build_dispatch(view(sysmem, (ram, 0x4000, 0x2000)))))
    )
    diffs = diff_dispatch(ours, shifted)
    assert [d.where for d in diffs][:3] == ["section #1", "section #2", "section #3"]
    assert diffs[0].kind == "changed" and "start, end, name" in diffs[0].explanation
    assert "subpage container for page 0000000000001000 of FlatRange #0" in diffs[0].explanation
    assert diffs[2].kind == "extra"
    assert any(d.where.startswith("node [5] entries") for d in diffs)


# -- against real QEMU ------------------------------------------------------------


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def assert_dispatch_equals_qemus(
    tree: str, flat_d: str, page_bits: int | None = 12, *, give_page_bits: bool = False
) -> int:
    """Check with --dispatch, then compare our dumps with QEMU's byte for byte (no MRU).

    :param page_bits: the page size QEMU used (the check infers it from QEMU's dump);
        ``None``: not known beforehand.
    :param give_page_bits: pass ``page_bits`` to the check (``--page-bits``) instead of
        expecting it to be read off QEMU's dump.
    :return: how many dumps were compared.
    """
    qemu = parse_flat(flat_d)
    assert print_flat(qemu) == flat_d, "parse -> print is not byte-exact"
    for b in qemu.views:
        if b.dispatch_dump is not None:
            assert format_dispatch(b.dispatch_dump) == b.dispatch
    result = check(tree, flat_d, dispatch=True, page_bits=page_bits if give_page_bits else None)
    problems = [
        (v.address_spaces, v.diffs[:3], v.dispatch_diffs[:3])
        for v in result.comparison.views
        if not v.ok
    ]
    assert result.ok, problems
    assert result.page_bits is not None
    assert page_bits is None or result.page_bits.value == page_bits
    ours = _by_address_spaces(result.ours)
    compared = 0
    for b in qemu.views:
        if not b.dispatch:
            continue
        assert _take(ours, b) == strip_mru(b.dispatch), _key(b)
        compared += 1
    assert compared >= 1
    return compared


def _key(block: FlatViewBlock) -> tuple[tuple[str, str, str | None], ...]:
    """A FlatView by its address spaces (names repeat: ARM has two `cpu-tag-memory-0`)."""
    return tuple(sorted((a.name, a.root, a.alias) for a in block.address_spaces))


def _by_address_spaces(
    doc: FlatDocument,
) -> dict[tuple[tuple[str, str, str | None], ...], list[list[str]]]:
    """Our dumps by address spaces; a list each, as keys repeat (QEMU 10 has one
    `virtio-pci-cfg-mem-as` per virtio-pci device)."""
    out: dict[tuple[tuple[str, str, str | None], ...], list[list[str]]] = {}
    for b in doc.views:
        out.setdefault(_key(b), []).append(b.dispatch)
    return out


def _take(
    ours: dict[tuple[tuple[str, str, str | None], ...], list[list[str]]], block: FlatViewBlock
) -> list[str]:
    """Our dump for QEMU's *block*: the equal one among those of the same key, if any
    (each used once), else the first, for the assertion to show."""
    dumps = ours.get(_key(block), [])
    want = strip_mru(block.dispatch)
    if want in dumps:
        dumps.remove(want)
        return want
    return dumps[0] if dumps else []


LIVE = [  # name, binary, arguments, seconds to boot first, QEMU's page bits
    ("pc", "qemu-system-x86_64", ["-machine", "pc"], 0.0, 12),
    ("q35", "qemu-system-x86_64", ["-machine", "q35"], 0.0, 12),
    # Firmware programs BARs and bridge windows: more sub-pages, in the memory view too.
    (
        "q35-pci-booted",
        "qemu-system-x86_64",
        [
            "-machine",
            "q35",
            "-nic",
            "none",
            "-device",
            "e1000e",
            "-device",
            "virtio-net-pci",
            "-device",
            "virtio-rng-pci",
            "-device",
            "qemu-xhci",
        ],
        3.0,
        12,
    ),
    ("virt", AARCH64, ["-machine", "virt", "-cpu", "cortex-a57"], 0.0, 12),
    (
        "virt-gicv3-secure",
        AARCH64,
        [
            "-machine",
            "virt,gic-version=3,secure=on,virtualization=on",
            "-cpu",
            "max",
            "-nic",
            "none",
            "-device",
            "virtio-net-pci",
            "-device",
            "virtio-rng-device",
        ],
        0.0,
        12,
    ),
    # SMMUv3: IOMMU regions, which only the dump's ` [iommu]` tells from i/o regions.
    (
        "virt-smmuv3",
        AARCH64,
        [
            "-machine",
            "virt,iommu=smmuv3",
            "-cpu",
            "max",
            "-nic",
            "none",
            "-device",
            "virtio-rng-pci",
        ],
        0.0,
        12,
    ),
    # Observed: QEMU 7.2 runs raspi3b with 1 KiB target pages.
    ("raspi3b", AARCH64, ["-machine", "raspi3b"], 0.0, 10),
]


async def capture(binary: str, args: list[str], boot: float) -> tuple[str, str]:
    async with QemuInstance(args, binary=binary) as vm:
        if boot:
            await vm.monitor.execute("cont")
            await asyncio.sleep(boot)
            await vm.monitor.execute("stop")
        tree = await vm.monitor.info_mtree()
        flat_d = await vm.monitor.info_mtree(flatview=True, dispatch=True)
    return tree, flat_d


@pytest.mark.qemu
@pytest.mark.parametrize(
    ("binary", "args", "boot", "page_bits"), [c[1:] for c in LIVE], ids=[c[0] for c in LIVE]
)
async def test_live_dispatch_equals_qemus(
    binary: str, args: list[str], boot: float, page_bits: int, qemu_binary: str
) -> None:
    if binary == AARCH64 and shutil.which(binary) is None:
        skip_live(f"{binary} not installed (Debian package qemu-system-arm)")
    if binary == "qemu-system-x86_64":
        binary = qemu_binary
    tree, flat_d = await capture(binary, args, boot)
    assert_dispatch_equals_qemus(tree, flat_d, page_bits)
    if "smmuv3" in args[1]:
        # Without inference the IOMMU regions stay i/o: ` [iommu]` differs.
        strict = check(tree, flat_d, dispatch=True, strict=True)
        diffs = [d for v in strict.comparison.views for d in v.dispatch_diffs]
        assert any(d.explanation.startswith("iommu differ") for d in diffs)


FIXTURES = sorted(p.parent for p in ROOT.glob("qemu-*/*/*/info-mtree-f-d.txt"))


@pytest.mark.parametrize("directory", FIXTURES, ids=[str(p.relative_to(ROOT)) for p in FIXTURES])
def test_fixture_dispatch_equals_qemus(directory: Path) -> None:
    page_bits = 12 if directory.parent.name in ("x86_64", "i386") else None
    give = False
    if directory.parent.name == "tricore" and directory.parent.parent.name == "qemu-5.2":
        # QEMU 5.2's tricore dump has no subpage: nothing in the text gives the page
        # size, so it is given as a user would with --page-bits (TARGET_PAGE_BITS 14).
        page_bits, give = 14, True
    assert_dispatch_equals_qemus(
        read(directory / "info-mtree.txt"),
        read(directory / "info-mtree-f-d.txt"),
        page_bits,
        give_page_bits=give,
    )


# -- the command line ---------------------------------------------------------------


def test_check_dispatch_exit_codes(tmp_path: Path) -> None:
    sysmem = region("system", RegionKind.CONTAINER, SIZE_2_64)
    tree = (
        "address-space: memory\r\n"
        "  0000000000000000-ffffffffffffffff (prio 0, i/o): system\r\n"
        "    0000000000001000-000000000000100f (prio 0, i/o): dev\r\n\r\n"
    )
    flat = (
        'FlatView #0\r\n AS "memory", root: system\r\n Root memory region: system\r\n'
        "  0000000000001000-000000000000100f (prio 0, i/o): dev\r\n"
    )
    dump = dump_text(view(sysmem, (region("dev"), 0x1000, 0x10)))
    (tmp_path / "tree.txt").write_bytes(tree.encode())
    (tmp_path / "f.txt").write_bytes((flat + "\r\n").encode())
    (tmp_path / "f-d.txt").write_bytes((flat + "\r\n".join(dump) + "\r\n\r\n").encode())
    bad = [ln.replace("ptr=[5] skip=6", "ptr=[5] skip=5") for ln in dump]
    (tmp_path / "f-d-bad.txt").write_bytes((flat + "\r\n".join(bad) + "\r\n\r\n").encode())
    args = [
        "--color",
        "never",
        "check",
        "--tree",
        str(tmp_path / "tree.txt"),
        "--dispatch",
        "--flat",
    ]
    assert main([*args, str(tmp_path / "f-d.txt")]) == 0
    assert main([*args, str(tmp_path / "f-d-bad.txt")]) == 1
    assert main([*args, str(tmp_path / "f.txt")]) == 2  # no -d dump to compare with


@pytest.mark.qemu
async def test_render_dispatch_prints_qemus_dump(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], qemu_binary: str
) -> None:
    """`qmirror render --dispatch` prints `-f -d` whose dumps are QEMU's (live pc)."""
    tree, flat_d = await capture(qemu_binary, ["-machine", "pc"], 0.0)
    (tmp_path / "tree.txt").write_bytes(tree.encode())
    assert main(["render", "--tree", str(tmp_path / "tree.txt"), "--dispatch"]) == 0
    ours = _by_address_spaces(parse_flat(capsysbinary.readouterr().out.decode()))
    qemu = parse_flat(flat_d)
    assert [_take(ours, b) for b in qemu.views] == [strip_mru(b.dispatch) for b in qemu.views]
