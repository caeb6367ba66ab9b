"""Flat text to model, for a paste that holds only ``info mtree -f`` output.

A ``-f`` text says where each range is, what it maps and at which offset into that
region, but not the tree that made it. For commands that only need the FlatViews
(``map``, ``ram-map``, ``diff``), :func:`machine_from_flat` builds the smallest model
that renders to the same ranges: one root container per FlatView, and for each range
an alias of its region (one region per name and RAM-ness, as large as its furthest
range) at the printed start and offset. ``rom`` on a RAM region is a read-only alias,
as QEMU's PAM windows are. The nesting and the aliases QEMU really had are unknown;
a reading made this way is partial and says so.
"""

from __future__ import annotations

from qmirror.core.model import MASK64, SIZE_2_64, AddressSpace, Machine, MemoryRegion, RegionKind
from qmirror.text.flat import FlatDocument


_KIND = {
    "ram": RegionKind.RAM,
    "rom": RegionKind.ROM,
    "romd": RegionKind.ROMD,
    "ramd": RegionKind.RAMD,
}
_RAMISH = frozenset(_KIND)


def machine_from_flat(doc: FlatDocument) -> Machine:
    """A model whose FlatViews are the document's ranges; see the module docstring."""
    extent: dict[tuple[str, bool], tuple[set[str], int]] = {}
    for v in doc.views:
        for r in v.ranges:
            key = (r.name, r.type_word in _RAMISH)
            words, reach = extent.get(key, (set(), 0))
            words.add(r.type_word)
            size = ((r.end - r.start) & MASK64) + 1
            extent[key] = (words, min(SIZE_2_64, max(reach, r.offset + size)))
    regions: dict[tuple[str, bool], MemoryRegion] = {}
    for (name, ramish), (words, reach) in extent.items():
        if not ramish:
            kind = RegionKind.IO
        elif "ram" in words:
            kind = RegionKind.RAM
        else:
            kind = _KIND[sorted(words)[0]]
        regions[name, ramish] = MemoryRegion(name, kind, reach)
    machine = Machine()
    for v in doc.views:
        root_name = v.root or (v.address_spaces[0].root if v.address_spaces else "") or "system"
        root: MemoryRegion | None = None
        if v.ranges or v.root is not None:
            root = MemoryRegion(root_name, RegionKind.CONTAINER, SIZE_2_64)
            for r in v.ranges:
                target = regions[r.name, r.type_word in _RAMISH]
                size = ((r.end - r.start) & MASK64) + 1
                alias = MemoryRegion(
                    r.name,
                    RegionKind.ALIAS,
                    size,
                    alias=target,
                    alias_offset=r.offset,
                    nonvolatile=r.nonvolatile,
                    readonly=r.type_word == "rom" and target.kind is not RegionKind.ROM,
                )
                root.add_subregion(alias, r.start, r.priority)
        for a in v.address_spaces:
            machine.address_spaces.append(AddressSpace(a.name, root))
    return machine
