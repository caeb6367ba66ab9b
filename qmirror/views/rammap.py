"""The guest RAM map: every guest-physical range backed by RAM, and where in RAM. Pure.

What memory-introspection tools (memflow, volatility, LibVMI style) need to turn a
guest-physical address into an offset in QEMU's guest RAM: for each range of each
FlatView whose region is backed by a RAMBlock, the block and the offset in it.

In QEMU terms: a FlatRange points at the terminating region its addresses reach
(``FlatRange.mr``, aliases already followed by the renderer) and at the offset
inside it (``offset_in_region``). A RAM region owns exactly one RAMBlock, which
starts at the region's offset 0, so::

    host byte = RAMBlock(mr).host + offset_in_region + (addr - start)
    ram_addr  = RAMBlock(mr).offset + offset_in_region + (addr - start)

Which ranges count: regions of kind ``ram`` and ``rom`` (``memory_region_init_ram*``
and ``_rom*``, including the RAM of ``memory-backend-*`` objects, whose region is
named after the backend's id), RAM devices (``ramd``, e.g. VFIO BAR mmaps) and ROM
devices in ROMD mode (reads come straight from their RAMBlock; writes trap). MMIO
(``i/o``) and ROM devices outside ROMD mode are not RAM-backed.

Exact versus approximate:

* ``start``, ``size``, ``block_offset``, ``readonly``, ``nonvolatile`` and the address
  spaces are exact: they follow from QEMU's rendering, which qmirror reproduces (and
  ``check`` verifies against QEMU's own ``-f``);
* the RAMBlock's name (``info ramblock``'s "Block Name", QEMU's ``idstr``) is the
  region's name, except that QEMU prefixes the blocks of devices on a bus that names
  its devices (PCI: ``0000:00:02.0/vga.vram``), which ``info mtree`` does not show.
  With QEMU's ``info ramblock`` text (read from live targets) blocks are matched by
  name and size and ``block_exact`` is true, and ``ram_addr`` is given; without it,
  device-owned blocks carry the region name and ``block_exact`` is false.

JSON schema ``qmirror.ram-map/1`` (addresses as ``"0x%016x"`` strings)::

    {"schema": "qmirror.ram-map/1",
     "source": {"label": ..., "machine": ..., "qemu_version": ..., "accelerator": ...},
     "ramblocks": true|false,          # whether `info ramblock` was used
     "ranges": [{"start", "size", "last",          # guest-physical, last = inclusive end
                 "block", "block_exact", "block_offset", "ram_addr" (or null),
                 "region", "kind": "ram"|"rom"|"romd"|"ramd",
                 "readonly", "nonvolatile", "owner" (as -o prints it, or null),
                 "address_spaces": [names]}]}

CSV has the same columns, address spaces joined with ``;``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from qmirror.core.model import MemoryRegion
from qmirror.core.render import FlatRange, range_kind
from qmirror.core.units import hexs
from qmirror.errors import ParseError
from qmirror.text.grammar import format_owners
from qmirror.verify.reading import Reading


SCHEMA = "qmirror.ram-map/1"
RAM_KINDS = ("ram", "rom", "romd", "ramd")
CSV_COLUMNS = (
    "start",
    "size",
    "last",
    "block",
    "block_exact",
    "block_offset",
    "ram_addr",
    "region",
    "kind",
    "readonly",
    "nonvolatile",
    "owner",
    "address_spaces",
)


@dataclass(frozen=True, slots=True)
class RamBlock:
    """One line of ``info ramblock``."""

    name: str
    page_size: str
    offset: int
    used: int
    total: int


_RAMBLOCK_HEAD = re.compile(r"\s*Block Name\s+PSize\s+Offset\s+Used\s+Total\s*")
_RAMBLOCK_LINE = re.compile(
    r"\s*(?P<name>\S(?:.*\S)?)\s+(?P<psize>\d+(?:\.\d+)? ?[KMGT]?i?B)\s+"
    r"0x(?P<offset>[0-9a-f]+)\s+0x(?P<used>[0-9a-f]+)\s+0x(?P<total>[0-9a-f]+)\s*"
)


def parse_ramblock(text: str) -> list[RamBlock]:
    """Parse QEMU's ``info ramblock`` (7.2: a header, then one block per line).

    :raise ParseError: with the line and the reason.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not _RAMBLOCK_HEAD.fullmatch(lines[0]):
        raise ParseError(
            "expected the 'Block Name PSize Offset Used Total' header of `info ramblock`",
            line=1,
            column=1,
            source_line=lines[0] if lines else "",
        )
    blocks = []
    for n, line in enumerate(lines[1:], start=2):
        m = _RAMBLOCK_LINE.fullmatch(line)
        if m is None:
            raise ParseError(
                "expected 'NAME PSIZE 0xOFFSET 0xUSED 0xTOTAL'", line=n, column=1, source_line=line
            )
        blocks.append(
            RamBlock(
                m["name"], m["psize"], int(m["offset"], 16), int(m["used"], 16), int(m["total"], 16)
            )
        )
    return blocks


@dataclass(slots=True)
class RamRange:
    """A guest-physical range backed by RAM."""

    start: int
    size: int
    block: str
    block_exact: bool
    block_offset: int
    ram_addr: int | None
    region: str
    kind: str
    readonly: bool
    nonvolatile: bool
    owner: str | None
    address_spaces: list[str] = field(default_factory=list)


def _block_for(mr: MemoryRegion, blocks: list[RamBlock] | None) -> tuple[str, bool, int | None]:
    """(block name, exact, block's ram_addr offset) for a RAM region."""
    owner = mr.ownership.owner if mr.ownership is not None else None
    if blocks is not None:
        found = [
            b
            for b in blocks
            if (b.name == mr.label or b.name.endswith("/" + mr.label)) and b.used == mr.size
        ]
        if len(found) == 1:
            return found[0].name, True, found[0].offset
        if len(found) > 1:
            plain = [b for b in found if b.name == mr.label]
            if len(plain) == 1 and (owner is None or not owner.is_device):
                return plain[0].name, True, plain[0].offset
    # Not a device (a backend object, the machine, no owner): QEMU names the block
    # after the region. Devices may get a bus-path prefix we cannot see.
    exact = mr.ownership is not None and (owner is None or not owner.is_device)
    return mr.label, exact, None


def ram_map(reading: Reading, *, address_spaces: Collection[str] = ()) -> list[RamRange]:
    """Every RAM-backed guest-physical range of ``reading``, by start.

    A range that several FlatViews share (``memory`` and ``cpu-smm-0`` map the same
    RAM at the same place) is listed once with all their address spaces.

    :param address_spaces: only the FlatViews serving address spaces of these names.
    """
    blocks = parse_ramblock(reading.ramblock_text) if reading.ramblock_text else None
    rows: dict[tuple[int, int, MemoryRegion, int, bool], RamRange] = {}
    for view in reading.views:
        names = [a.name for a in view.address_spaces]
        if address_spaces and not any(n in address_spaces for n in names):
            continue
        for r in view.ranges:
            kind = range_kind(r)
            if kind not in RAM_KINDS:
                continue
            key = (r.start, r.size, r.mr, r.offset_in_region, r.readonly)
            row = rows.get(key)
            if row is None:
                row = rows[key] = _row(r, kind, blocks)
            row.address_spaces.extend(n for n in names if n not in row.address_spaces)
    return sorted(rows.values(), key=lambda x: (x.start, x.size, x.block))


def _row(r: FlatRange, kind: str, blocks: list[RamBlock] | None) -> RamRange:
    mr = r.mr
    name, exact, base = _block_for(mr, blocks)
    return RamRange(
        start=r.start,
        size=r.size,
        block=name,
        block_exact=exact,
        block_offset=r.offset_in_region,
        ram_addr=None if base is None else base + r.offset_in_region,
        region=mr.label,
        kind=kind,
        readonly=r.readonly or kind == "romd",
        nonvolatile=r.nonvolatile,
        owner=None if mr.ownership is None else format_owners(mr.ownership).strip(),
    )


def _record(row: RamRange) -> dict[str, Any]:
    return {
        "start": hexs(row.start),
        "size": hexs(row.size),
        "last": hexs(row.start + row.size - 1),
        "block": row.block,
        "block_exact": row.block_exact,
        "block_offset": hexs(row.block_offset),
        "ram_addr": None if row.ram_addr is None else hexs(row.ram_addr),
        "region": row.region,
        "kind": row.kind,
        "readonly": row.readonly,
        "nonvolatile": row.nonvolatile,
        "owner": row.owner,
        "address_spaces": list(row.address_spaces),
    }


def to_json(reading: Reading, rows: list[RamRange]) -> dict[str, Any]:
    """The ``qmirror.ram-map/1`` document."""
    meta = reading.meta
    return {
        "schema": SCHEMA,
        "source": {
            "label": reading.label,
            "machine": meta.get("machine"),
            "qemu_version": meta.get("qemu_version"),
            "accelerator": reading.accel.value,
        },
        "ramblocks": reading.ramblock_text is not None,
        "ranges": [_record(row) for row in rows],
    }


def to_csv(rows: list[RamRange]) -> str:
    """The rows as CSV with a header line (:data:`CSV_COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        rec = _record(row)
        rec["address_spaces"] = ";".join(row.address_spaces)
        writer.writerow([_cell(rec[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
