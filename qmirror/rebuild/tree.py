"""Tree text to model: :func:`build_machine` rebuilds the regions of a parsed tree text.

The document (:mod:`qmirror.text.tree`) is the text's structure; here the text's quirks
matter (reference §4.4):

* **One printed line is one *occurrence* of a region, not a region.** A region
  that is both mapped and an alias target (``pci``, ``system``) is printed once in
  its tree and again, in full, in its ``memory-region:`` block. Block roots are
  unified with the occurrence they repeat: same name, same relative subtree, and
  the block's start equal to the region's ``addr`` in its container.
* **Hidden parents.** Without ``-D`` a disabled region's line is skipped but its
  enabled children still print at their real depth. A jump of more than one level
  means hidden ancestors; we stand in a disabled *synthetic* region for them (they
  never render, and they print nothing without ``-D``).
* **Alias targets are names.** ``memory-region:`` blocks come out in the order
  QEMU's printer first met each alias target (by identity). Replaying that walk
  over the printed lines says which block, i.e. which region, every alias means,
  even when names repeat. A block that no visible alias explains was queued by a
  hidden (disabled) alias: we stand in a disabled synthetic alias at the point of
  the walk where QEMU must have met it, so the printer reproduces the block order.
"""

from __future__ import annotations

from qmirror.core.bulk import gc_paused
from qmirror.core.model import MASK64, AddressSpace, Fact, Machine, MemoryRegion, RegionKind, Source
from qmirror.errors import ParseError
from qmirror.rebuild.occurrences import Occ, attribute_overflow, build_block, size_of, unify
from qmirror.rebuild.paste import mark_paste
from qmirror.rebuild.replay import resolve_aliases
from qmirror.text.grammar import ACCESS_LETTERS, TreeLine, hex16, last
from qmirror.text.repair import remap_error
from qmirror.text.tree import KIND_OF_WORD, TreeDocument


# -- rebuilding the model ---------------------------------------------------------------


def build_machine(doc: TreeDocument) -> Machine:
    """Rebuild the regions and address spaces a tree-mode text describes.

    Attributes the text does not carry get documented defaults here (recorded in
    each region's :attr:`~qmirror.core.model.MemoryRegion.facts`); :mod:`qmirror.rebuild.gaps`
    may then improve them from rules and evidence.

    :raise ParseError: when the text contradicts itself (an alias whose target has
        no block, blocks in an order no printing could produce).
    """
    try:
        with gc_paused():
            roots = [build_block(doc, i) for i in range(len(doc.blocks))]
            for block, root in zip(doc.blocks, roots, strict=True):
                attribute_overflow(doc, block, root)
            unify(doc, roots)
            resolve_aliases(doc, roots)
            machine = _make_machine(doc, roots)
            _release(roots)
            return machine
    except ParseError as err:
        # Built by doc.error where it arose; a paste's numbers still name its own lines.
        if doc.origin is not None:
            raise remap_error(err, doc.origin, None) from None
        raise


def _release(roots: list[Occ]) -> None:
    """Break the occurrences' parent/child cycles (and a representative's link to
    itself), so reference counting frees them now rather than the next collection
    (they are as many as the lines, and checks run with the collector paused)."""
    for root in roots:
        for occ in root.walk():
            occ.children = ()
            occ.parent = None
            del occ.rep
            occ.mr = None


def _make_machine(doc: TreeDocument, roots: list[Occ]) -> Machine:
    """Create one :class:`MemoryRegion` per distinct occurrence and wire them up."""
    reps: list[Occ] = []
    for root in roots:
        for occ in root.walk():
            if occ.rep is occ and occ.mr is None:  # a representative: one region
                occ.mr = _region_for(occ, doc)
                reps.append(occ)
    for occ in reps:
        if not occ.children:
            continue  # most regions are leaves: nothing to wire
        mr = occ.mr
        assert mr is not None
        kids = [_made(c) for c in occ.children]
        # The printed order is (addr, -priority) with ties in list order. QEMU's list is
        # priority-descending, newest first; among equals the text does not say which is
        # newer (G3): the higher address is taken as newer. Equal keys keep printed order.
        kids.sort(key=lambda k: (-k.priority, -(k.addr & MASK64)))
        mr.subregions = kids
        for k in kids:
            k.container = mr
        if len(kids) > 1:
            _note_overlaps(mr)
    for occ in reps:
        if occ.target_block is None:
            continue
        mr = occ.mr
        assert mr is not None
        mr.alias = _made(roots[occ.target_block])
        target = mr.alias
        if (
            target.synthetic
            and target.kind is RegionKind.CONTAINER
            and occ.line is not None
            and occ.line.type_word in KIND_OF_WORD
        ):
            # Reliability fix (issue 6): a hidden (disabled) target prints no line, but
            # the alias's line carries its type word (§1.1): keep it for re-printing.
            target.kind = KIND_OF_WORD[occ.line.type_word]
            target.readonly = target.kind is RegionKind.ROM
        if mr.fact("readonly") is None:
            mr.facts.append(_READONLY_DEFAULT)
        if occ.target_choice is not None and occ.target_choice[0] > 1:
            n, (owner_ok, inside) = occ.target_choice
            how = (
                "its owner"
                if owner_ok
                else "content inside the window"
                if inside
                else "the order QEMU queued them in"
            )
            mr.set_fact(
                Fact(
                    "G5",
                    "alias target",
                    mr.alias.label,
                    Source.DEFAULT,
                    f"{n} regions are named {mr.alias.label!r}; chosen by {how}",
                )
            )
    machine = Machine()
    tree_order: list[MemoryRegion | None] = []
    for block, root in zip(doc.blocks, roots, strict=True):
        if block.is_region_block:
            continue
        mr = _made(root)
        tree_order.append(mr)
        for name in _creation_order(block.names):
            machine.address_spaces.append(AddressSpace(name, mr))
    machine.tree_order = tree_order
    machine.set_fact(
        Fact(
            "G9",
            "address-space order",
            "as printed",
            Source.DEFAULT,
            "creation order is not printed: address spaces are kept in the "
            "order of their groups, names sorted",
        )
    )
    mark_paste(doc, roots, machine)
    # Containers come from the text's indentation, so they cannot loop; aliases can.
    machine.check(containers=False)
    return machine


def _made(occ: Occ) -> MemoryRegion:
    """The region an occurrence stands for (its representative's)."""
    mr = occ.find().mr
    assert mr is not None
    return mr


def _creation_order(names: list[str]) -> list[str]:
    """Undo QEMU's group header sort as far as it can be undone.

    Equal names print newest first, so runs of equal names are reversed; the order
    of different names is not printed (G9) and stays sorted.
    """
    out: list[str] = []
    i = 0
    while i < len(names):
        j = i
        while j < len(names) and names[j] == names[i]:
            j += 1
        out.extend(reversed(names[i:j]))
        i = j
    return out


def _note_overlaps(mr: MemoryRegion) -> None:
    """Record the G3 default where enabled equal-priority siblings overlap.

    A sweep per priority over the siblings sorted by address: O(k log k).
    """
    by_prio: dict[int, list[MemoryRegion]] = {}
    for k in mr.subregions:
        if k.enabled and k.size:
            by_prio.setdefault(k.priority, []).append(k)
    for prio, kids in by_prio.items():
        if len(kids) < 2:
            continue
        kids.sort(key=lambda k: k.addr)
        reach, holder = kids[0].addr + kids[0].size, kids[0]
        for k in kids[1:]:
            if k.addr < reach and k.addr != holder.addr:
                k.set_fact(
                    Fact(
                        "G3",
                        "order",
                        f"above {holder.label}",
                        Source.DEFAULT,
                        f"overlaps {holder.label!r} at equal priority {prio}; which "
                        "was added last is not printed: assume the one at the "
                        "higher address",
                    )
                )
            if k.addr + k.size > reach:
                reach, holder = k.addr + k.size, k


def _region_for(occ: Occ, doc: TreeDocument) -> MemoryRegion:
    line = occ.line
    parent = occ.parent
    base = parent.start if parent is not None else 0
    if line is None:
        # A hidden stand-in: disabled, so it never renders and prints nothing without -D.
        return MemoryRegion(
            occ.name,
            RegionKind.ALIAS if occ.target_block is not None else RegionKind.CONTAINER,
            min(occ.size, 1 << 64),
            addr=(occ.start - base) & MASK64,
            priority=occ.priority,
            enabled=False,
            synthetic=True,
            hidden_overflow_markers=occ.markers,
        )
    size = size_of(line)
    if line.alias_target is not None and (line.alias_start + last(size)) & MASK64 != line.alias_end:
        window = f"{hex16(line.alias_start)}-{hex16(line.alias_end)}"
        raise doc.error(
            f"alias window {window} does not have the alias's size ({size:#x} bytes)",
            line.lineno,
            window,
        )
    word = line.type_word
    if word in ACCESS_LETTERS:
        return _region_from_letters(occ, line, size, base)
    kids = bool(occ.children) and _has_real_children(occ)
    if line.alias_target is not None:
        kind = RegionKind.ALIAS
    elif word in ("i/o", "container"):
        kind = RegionKind.CONTAINER if kids else RegionKind.IO
    else:
        kind = KIND_OF_WORD[word]
    return _new_region(line, kind, size, base, kids)


def _has_real_children(occ: Occ) -> bool:
    """Subregions the text shows or implies. The stand-ins for hidden aliases that only
    reproduce the order of ``memory-region:`` blocks go wherever is convenient and say
    nothing about the region they were put under."""
    return any(c.target_block is None or c.line is not None for c in occ.children)


def _region_from_letters(occ: Occ, line: TreeLine, size: int, base: int) -> MemoryRegion:
    """A region printed with access letters (QEMU 1.1–2.8): ``R`` readable (ROMD mode),
    ``W`` writable. The letters say read-only-ness exactly, even for aliases, but not
    RAM versus MMIO: a writable leaf is taken for MMIO, a read-only one for ROM."""
    readable, writable = line.type_word[0] == "R", line.type_word[1] == "W"
    if line.alias_target is not None:
        kind = RegionKind.ALIAS
    elif not readable:
        kind = RegionKind.ROMD  # a ROM device out of ROMD mode
    elif _has_real_children(occ):
        kind = RegionKind.CONTAINER
    else:
        kind = RegionKind.IO if writable else RegionKind.ROM
    mr = _new_region(line, kind, size, base, _has_real_children(occ))
    mr.romd_mode = readable
    mr.readonly = not writable and kind is not RegionKind.ROMD
    mr.facts = [f for f in mr.facts if f.gap != "G1"]
    if kind is RegionKind.ALIAS:
        mr.set_fact(
            Fact(
                "G2",
                "readonly",
                "yes" if mr.readonly else "no",
                Source.TEXT,
                f"access letters {line.type_word}",
            )
        )
    elif readable and not _has_real_children(occ):
        what = "i/o" if writable else "rom"
        mr.set_fact(
            Fact(
                "G1",
                "kind",
                what,
                Source.DEFAULT,
                f"access letters {line.type_word} do not tell RAM from MMIO: assume {what}",
            )
        )
    return mr


def _new_region(line: TreeLine, kind: RegionKind, size: int, base: int, kids: bool) -> MemoryRegion:
    mr = MemoryRegion(
        line.name,
        kind,
        size,
        (line.start - base) & MASK64,
        line.priority,
        not line.disabled,
        line.type_word == "rom",
        line.nonvolatile,
        True,
        None,
        line.alias_start,
        line.ownership,
    )
    # Lists of the exact length: appending would over-allocate, a region at a time.
    if kind is RegionKind.CONTAINER or kind is RegionKind.IO:
        kind_default = _KIND_DEFAULT[kind, kids]
        mr.facts = [kind_default, _SIZE_DEFAULT] if line.start == line.end else [kind_default]
    elif line.start == line.end:
        mr.facts = [_SIZE_DEFAULT]
    return mr


# The default facts, one shared (frozen) object each rather than one per region.
_KIND_DEFAULT: dict[tuple[RegionKind, bool], Fact] = {
    (kind, kids): Fact(
        "G1",
        "kind",
        kind.value,
        Source.DEFAULT,
        f"printed 'i/o' and {'has' if kids else 'has no'} subregions: assume {kind.value}",
    )
    for kind in (RegionKind.CONTAINER, RegionKind.IO)
    for kids in (False, True)
}
_READONLY_DEFAULT = Fact(
    "G2",
    "readonly",
    "no",
    Source.DEFAULT,
    "an alias's own read-only flag is not printed: assume writable",
)
_SIZE_DEFAULT = Fact(
    "G4", "size", "1", Source.DEFAULT, "printed X-X: sizes 0 and 1 look alike; assume 1 byte"
)
