"""`qmirror ram-map`: guest-physical ranges backed by RAM, checked against QEMU's own output.

Every RAM-backed range QEMU prints in ``info mtree -f`` (type ``ram``, ``rom``,
``romd``, ``ramd``) must be listed, with its start, end and offset in the region, and
nothing else; on live VMs the RAMBlock names and ``ram_addr`` must be those of QEMU's
``info ramblock``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from pathlib import Path

import pytest

from qmirror.cli import main
from qmirror.errors import ParseError
from qmirror.live.launcher import QemuInstance
from qmirror.live.snapshot import load, take_snapshot
from qmirror.verify.reading import Reading, from_snapshot
from qmirror.views import rammap


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64"
DIRS = sorted(p.parent.name for p in FIXTURES.glob("*/meta.json"))
RAM_LINE = re.compile(
    r"  ([0-9a-f]{16})-([0-9a-f]{16}) \(prio -?\d+, (?:nv-)?(ram|rom|romd|ramd)"
    r"\): (.*?)(?: @([0-9a-f]{16}))?(?: (?:owner|parent):\{.*| orphan)?"
    r"(?: (?:KVM|kvm))*$"
)
RAMBLOCK_LINE = re.compile(
    r"^\s*(\S+)\s+\d+ [KMG]iB\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+", re.M
)
PC_DIMM = [
    "-machine",
    "pc",
    "-m",
    "1G,slots=4,maxmem=8G",
    "-object",
    "memory-backend-ram,id=m1,size=512M",
    "-device",
    "pc-dimm,memdev=m1,id=dimm1",
    "-nic",
    "none",
]


def qemu_ram_ranges(text: str) -> dict[tuple[int, int, str, int], set[str]]:
    """From QEMU's -f: (start, last, region, offset) → address spaces mapping it."""
    out: dict[tuple[int, int, str, int], set[str]] = {}
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = block.split("\n")
        names = {m.group(1) for ln in lines if (m := re.match(r' AS "(.*)", root: ', ln))}
        for ln in lines:
            m = RAM_LINE.match(ln)
            if m:
                key = (int(m[1], 16), int(m[2], 16), m[4], int(m[5] or "0", 16))
                out.setdefault(key, set()).update(names)
    return out


def reading(name: str) -> Reading:
    return from_snapshot(load(FIXTURES / name))


@pytest.mark.parametrize("name", DIRS)
def test_every_ram_range_qemu_prints_and_nothing_else(name: str) -> None:
    r = reading(name)
    rows = rammap.ram_map(r)
    ours: dict[tuple[int, int, str, int], set[str]] = {}
    for row in rows:
        key = (row.start, row.start + row.size - 1, row.region, row.block_offset)
        ours.setdefault(key, set()).update(row.address_spaces)
    assert ours == qemu_ram_ranges(r.flat_text or "")


def test_pc_dimm_rows() -> None:
    # Hand-derived from pc-dimm's command line: 1 GiB of pc.ram (below 4 GiB, in two
    # pieces around the legacy holes), the 512 MiB backend m1 plugged at 4 GiB.
    rows = {(row.region, row.start): row for row in rammap.ram_map(reading("pc-dimm"))}
    m1 = rows[("m1", 0x1_0000_0000)]
    assert (m1.size, m1.block, m1.block_exact, m1.block_offset, m1.kind, m1.readonly) == (
        0x2000_0000,
        "m1",
        True,
        0,
        "ram",
        False,
    )
    assert m1.owner == "owner:{obj path=/objects/m1}"
    low = rows[("pc.ram", 0x10_0000)]
    assert (low.size, low.block_offset, low.block) == (0x3FF0_0000, 0x10_0000, "pc.ram")
    bios = rows[("pc.bios", 0xFFFC_0000)]
    assert (bios.kind, bios.readonly) == ("rom", True)
    assert {"memory", "cpu-memory-0"} <= set(m1.address_spaces)


def test_json_and_csv_agree(capsys: pytest.CaptureFixture[str]) -> None:
    target = str(FIXTURES / "q35-booted")
    assert main(["ram-map", target]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "qmirror.ram-map/1" and doc["ramblocks"] is False
    assert main(["ram-map", target, "--format", "csv"]) == 0
    captured = capsys.readouterr()
    table = list(csv.DictReader(io.StringIO(captured.out)))
    assert [r["start"] for r in table] == [r["start"] for r in doc["ranges"]]
    assert list(table[0]) == list(rammap.CSV_COLUMNS)
    # Device-owned RAM (vga.vram) without `info ramblock`: said to be approximate.
    vram = next(r for r in doc["ranges"] if r["region"] == "vga.vram")
    assert vram["block_exact"] is False and vram["ram_addr"] is None
    assert "block_exact: false" in captured.err


def test_only_some_address_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ram-map", str(FIXTURES / "q35"), "--as", "cpu-smm-0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ranges"] and all("cpu-smm-0" in r["address_spaces"] for r in doc["ranges"])
    assert main(["ram-map", str(FIXTURES / "q35"), "--as", "nope"]) == 2


def test_parse_ramblock() -> None:
    text = (
        "              Block Name    PSize              Offset               Used"
        "              Total\r\n"
        "                  pc.ram    4 KiB  0x0000000000000000 0x0000000008000000 "
        "0x0000000008000000\r\n"
        "   0000:00:02.0/vga.vram    4 KiB  0x0000000008080000 0x0000000001000000 "
        "0x0000000001000000\r\n"
    )
    blocks = rammap.parse_ramblock(text)
    assert [(b.name, b.offset, b.used) for b in blocks] == [
        ("pc.ram", 0, 0x800_0000),
        ("0000:00:02.0/vga.vram", 0x808_0000, 0x100_0000),
    ]
    with pytest.raises(ParseError) as err:
        rammap.parse_ramblock(text.replace("0x0000000008080000", "zz"))
    assert err.value.line == 3


@pytest.mark.qemu
@pytest.mark.slow
async def test_live_block_names_and_ram_addr_are_qemus(qemu_binary: str) -> None:
    # After SeaBIOS ran, vga.vram is mapped; its RAMBlock is named after its PCI slot.
    async with QemuInstance(PC_DIMM, binary=qemu_binary) as vm:
        await vm.monitor.execute("cont")
        await asyncio.sleep(3)
        await vm.monitor.execute("stop")
        snap = await take_snapshot(vm.monitor)
        ramblock = await vm.monitor.hmp("info ramblock")
    offsets = {m[1]: (int(m[2], 16), int(m[3], 16)) for m in RAMBLOCK_LINE.finditer(ramblock)}
    rows = rammap.ram_map(from_snapshot(snap, ramblock_text=ramblock))
    assert rows
    for row in rows:
        assert row.block_exact and row.block in offsets, row
        base, used = offsets[row.block]
        assert row.ram_addr == base + row.block_offset
        assert row.block_offset + row.size <= used
    vram = next(row for row in rows if row.region == "vga.vram")
    assert re.fullmatch(r"0000:00:0[0-9a-f]\.0/vga\.vram", vram.block)


@pytest.mark.qemu
def test_live_cli(qemu_binary: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ram-map", "--launch", "--", qemu_binary, *PC_DIMM]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ramblocks"] is True
    m1 = next(r for r in doc["ranges"] if r["region"] == "m1")
    assert m1["block"] == "m1" and m1["block_exact"] is True and m1["ram_addr"] is not None
    assert m1["start"] == "0x0000000100000000"
