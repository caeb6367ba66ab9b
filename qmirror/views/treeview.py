"""The region tree as a rich :class:`~rich.tree.Tree`, for people at a terminal.

The same tree as ``info mtree``, grouped the same way (one node per group of address
spaces sharing a root, then ``memory-region:`` nodes for alias targets reached from
nowhere else), with what the text makes you count digits for spelled out: the kind
as qmirror decided it (``container``, ``i/o``, ``ram`` …), the size in human units,
the priority where it matters, alias arrows (``→ pc.ram @0x20000``), disabled regions
greyed, owners on request. Children come in address order, as QEMU prints them.
"""

from __future__ import annotations

from collections.abc import Collection

from rich.text import Text
from rich.tree import Tree

from qmirror.core.model import MASK64, AddressSpace, Machine, MemoryRegion, kind_word
from qmirror.core.units import human_size
from qmirror.text.grammar import format_owners, hex16, last


#: Colour of each kind (the map uses the same families).
KIND_STYLES = {
    "ram": "green",
    "rom": "yellow",
    "romd": "magenta",
    "ramd": "bright_green",
    "i/o": "red",
    "container": "blue",
    "iommu": "bright_magenta",
    "alias": "cyan",
}


def region_label(mr: MemoryRegion, start: int, *, owners: bool = False) -> Text:
    """One node: ``start-end name [disabled]  kind  size  prio N  → target @off  owner``."""
    end = (start + last(mr.size)) & MASK64
    text = Text()
    text.append(f"{hex16(start)}-{hex16(end)} ", style="dim")
    text.append(mr.label, style="bold" if mr.enabled else "")
    if not mr.enabled:
        text.append(" [disabled]")
    kind = kind_word(mr)
    text.append(f"  {kind}", style=KIND_STYLES.get(kind, ""))
    if mr.readonly and kind not in ("rom",):
        text.append(" ro", style=KIND_STYLES["rom"])
    if mr.nonvolatile:
        text.append(" nv", style=KIND_STYLES["rom"])
    text.append(f"  {human_size(mr.size)}")
    if mr.priority:
        text.append(f"  prio {mr.priority}", style="bold")
    if mr.alias is not None:
        target = mr.alias
        text.append(
            f"  → {target.label} @{mr.alias_offset & MASK64:#x}", style=KIND_STYLES["alias"]
        )
        final = target.final_target()
        if final is not target:
            text.append(f" ⇒ {final.label}", style=KIND_STYLES["alias"])
    if mr.synthetic:
        text.append("  (hidden by the text: a disabled parent)", style="italic")
    if owners and mr.ownership is not None:
        text.append(" " + format_owners(mr.ownership).strip(), style="dim italic")
    if not mr.enabled:
        text.stylize("dim")
    return text


def _groups(machine: Machine) -> list[tuple[MemoryRegion | None, list[AddressSpace]]]:
    groups: dict[MemoryRegion | None, tuple[MemoryRegion | None, list[AddressSpace]]] = {}
    for a in machine.address_spaces:
        groups.setdefault(a.root, (a.root, []))[1].append(a)
    return list(groups.values())


def build_tree(
    machine: Machine,
    *,
    title: str = "memory regions",
    owners: bool = False,
    address_spaces: Collection[str] = (),
    depth: int | None = None,
    show_disabled: bool = True,
) -> Tree:
    """The rich Tree of ``machine``.

    :param address_spaces: only the groups holding an address space of these names
        (all when empty); alias targets are then listed only if reached from them.
    :param depth: levels of regions shown below each root (``None``: all).
    :param show_disabled: show disabled regions (greyed) and their subtrees.
    """
    top = Tree(Text(title, style="bold"), guide_style="dim")
    queue: list[MemoryRegion] = []
    queued: set[MemoryRegion] = set()
    shown: set[MemoryRegion] = set()
    for root, ases in _groups(machine):
        if address_spaces and not any(a.name in address_spaces for a in ases):
            continue
        names = Text("address-space: ", style="dim")
        names.append(", ".join(a.name for a in ases), style="bold cyan")
        node = top.add(names)
        if root is None:
            node.add(Text("(no root: destroyed)", style="dim italic"))
            continue
        _add_region(node, root, 0, owners, depth, show_disabled, queue, queued, shown)
    i = 0
    while i < len(queue):
        mr = queue[i]
        i += 1
        if mr in shown:
            continue
        head = Text("memory-region: ", style="dim")
        head.append(mr.label, style="bold cyan")
        node = top.add(head)
        _add_region(node, mr, 0, owners, depth, show_disabled, queue, queued, shown)
    return top


def _add_region(
    parent: Tree,
    root: MemoryRegion,
    base: int,
    owners: bool,
    depth: int | None,
    show_disabled: bool,
    queue: list[MemoryRegion],
    queued: set[MemoryRegion],
    shown: set[MemoryRegion],
) -> None:
    # Iterative: real trees are shallow, but a generated one need not be.
    stack: list[tuple[Tree, MemoryRegion, int, int]] = [(parent, root, base, 0)]
    while stack:
        node, mr, base, level = stack.pop()
        if not mr.enabled and not show_disabled:
            continue
        start = (base + mr.addr) & MASK64
        shown.add(mr)
        child = node.add(region_label(mr, start, owners=owners))
        if mr.alias is not None and mr.alias not in queued:
            queued.add(mr.alias)
            queue.append(mr.alias)
        if depth is not None and level >= depth:
            if mr.subregions:
                child.add(Text(f"… {len(mr.subregions)} subregions", style="dim italic"))
            continue
        kids = sorted(mr.subregions, key=lambda c: (c.addr & MASK64, -c.priority))
        for kid in reversed(kids):
            stack.append((child, kid, start, level + 1))
