"""QEMU's dispatch structure of a FlatView, and its ``info mtree -f -d`` dump.

When QEMU renders a FlatView it also builds the structure that answers "which
section handles this address" (7.2 ``softmmu/physmem.c``; reference §4.7, §2.1):

* a **section table**: ``#0`` is the unassigned section covering all of
  ``[0, 2**64)``; then each FlatRange, in address order, adds a section for a
  partial page at its start (after a new unnamed *subpage container* section for
  that page, if the page has none yet), one section for its whole pages, and a
  section for a partial page at its end;
* a **radix tree** over page numbers, 9 bits per level, with
  ``((64 - page_bits - 1) // 9) + 1`` levels. Nodes are numbered in allocation
  order; a run of pages that fills an aligned slot of a level becomes a leaf right
  there. Afterwards, entries leading to a node with a single used entry are made to
  skip it (the skipped nodes stay allocated and are still printed).

:func:`build_dispatch` reproduces both from our rendered FlatView;
:func:`dump_dispatch` turns it into the dump (:mod:`qmirror.text.dispatch` prints
and parses that text); :func:`diff_dispatch` compares two dumps field
by field, ignoring `` [MRU]`` (which section the last lookup hit: run-time state).
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass

from qmirror.core.model import SIZE_2_64, MemoryRegion, RegionKind
from qmirror.core.render import FlatRange, FlatView
from qmirror.errors import ModelError
from qmirror.text.dispatch import (
    DEFAULT_PAGE_BITS,
    LEVEL_BITS,
    NODE_SIZE,
    DispatchDump,
    DispatchNode,
    Entry,
    entry_runs,
)
from qmirror.text.dispatchlines import (
    DISPATCH_LABELS,
    DISPATCH_NIL,
    DispatchNodesLine,
    DispatchSectionLine,
    format_dispatch_nodes,
    format_dispatch_section,
)
from qmirror.text.grammar import hex16, last


#: ``phys_section_add`` refuses the section that would make this many (it must fit
#: in the low bits of a page-aligned TLB entry).
_SKIP_BITS = 6


def levels_for(page_bits: int) -> int:
    """``P_L2_LEVELS``: radix-tree levels for a 64-bit space and this page size."""
    return (64 - page_bits - 1) // LEVEL_BITS + 1


class SectionKind(enum.Enum):
    """Why a section exists (named after the step of physmem.c that adds it)."""

    UNASSIGNED = "unassigned"
    SUBPAGE = "subpage container"
    FIRST = "first sub-page"
    PAGES = "whole pages"
    LAST = "last sub-page"


@dataclass(frozen=True, slots=True)
class Section:
    """One entry of the section table.

    :param mr: the FlatRange's region; ``None`` for ``#0`` and subpage containers
        (QEMU's internal, unnamed regions).
    :param range_index: which FlatRange of the view added it (``None`` for ``#0``).
    """

    start: int
    size: int
    mr: MemoryRegion | None
    kind: SectionKind
    range_index: int | None = None

    @property
    def name(self) -> str:
        """The name ``-d`` prints: unnamed regions are ``(noname)``."""
        return "(noname)" if self.mr is None or self.mr.name is None else self.mr.name


@dataclass(eq=False)
class Dispatch:
    """The dispatch of one FlatView: sections, radix nodes and the root entry."""

    root: MemoryRegion | None
    page_bits: int
    levels: int
    sections: list[Section]
    nodes: list[list[Entry]]
    phys_map: Entry


# -- building ---------------------------------------------------------------------


class _Builder:
    """``flatview_add_to_dispatch`` for each range, then ``phys_page_compact``."""

    def __init__(self, page_bits: int) -> None:
        if not 1 <= page_bits < 64:
            raise ModelError(f"target page bits {page_bits}: not a page size")
        self.page_bits = page_bits
        self.page = 1 << page_bits
        self.levels = levels_for(page_bits)
        self.sections: list[Section] = []
        self.nodes: list[list[Entry]] = []
        # The root entry lives in a one-element list so that it is updated in place
        # like the entries inside nodes.
        self.root_cell: list[Entry] = [(1, DISPATCH_NIL)]
        # Pages that have a subpage container already (page start -> its section).
        self.subpages: dict[int, int] = {}
        self._add(Section(0, SIZE_2_64, None, SectionKind.UNASSIGNED))

    def _add(self, section: Section) -> int:
        if len(self.sections) >= self.page:
            raise ModelError(
                f"more than {self.page} dispatch sections: QEMU would abort (phys_section_add)"
            )
        self.sections.append(section)
        return len(self.sections) - 1

    def add_range(self, i: int, r: FlatRange) -> None:
        """Split one FlatRange into sub-page and whole-page sections."""
        start, size, page = r.start, r.size, self.page
        head = -start % page
        if head:
            now = min(head, size)
            self._subpage(Section(start, now, r.mr, SectionKind.FIRST, i))
            if now == size:
                return
            start, size = start + now, size - now
        if size >= page:
            whole = size - size % page
            index = self._add(Section(start, whole, r.mr, SectionKind.PAGES, i))
            self._page_set(start >> self.page_bits, whole >> self.page_bits, index)
            if whole == size:
                return
            start, size = start + whole, size - whole
        self._subpage(Section(start, size, r.mr, SectionKind.LAST, i))

    def _subpage(self, section: Section) -> None:
        base = section.start - section.start % self.page
        if base not in self.subpages:
            container = self._add(
                Section(base, self.page, None, SectionKind.SUBPAGE, section.range_index)
            )
            self.subpages[base] = container
            self._page_set(base >> self.page_bits, 1, container)
        # Which bytes of the page go to it is run-time detail the dump does not show.
        self._add(section)

    def _alloc(self, leaf: bool) -> int:
        self.nodes.append([(0, 0)] * NODE_SIZE if leaf else [(1, DISPATCH_NIL)] * NODE_SIZE)
        return len(self.nodes) - 1

    def _page_set(self, index: int, count: int, leaf: int) -> None:
        todo = [index, count]
        self._set_level(self.root_cell, 0, todo, leaf, self.levels - 1)

    def _set_level(
        self, cell: list[Entry], slot: int, todo: list[int], leaf: int, level: int
    ) -> None:
        skip, ptr = cell[slot]
        if skip == 0:
            raise ModelError("dispatch: a page range overlaps a mapped one (ranges overlap?)")
        if ptr == DISPATCH_NIL:
            ptr = self._alloc(level == 0)
            cell[slot] = (skip, ptr)
        node = self.nodes[ptr]
        shift = level * LEVEL_BITS
        step = 1 << shift
        j = (todo[0] >> shift) & (NODE_SIZE - 1)
        while todo[1] and j < NODE_SIZE:
            if todo[0] & (step - 1) == 0 and todo[1] >= step:
                # An aligned, fully covered slot: a leaf at this level.
                node[j] = (0, leaf)
                todo[0] += step
                todo[1] -= step
            else:
                self._set_level(node, j, todo, leaf, level - 1)
            j += 1

    def compact(self) -> None:
        if self.root_cell[0][0]:
            self._compact(self.root_cell, 0)

    def _compact(self, cell: list[Entry], slot: int) -> None:
        skip, ptr = cell[slot]
        if ptr == DISPATCH_NIL:
            return
        node = self.nodes[ptr]
        used = -1
        count = 0
        for j, (s, p) in enumerate(node):
            if p == DISPATCH_NIL:
                continue
            used = j
            count += 1
            if s:
                self._compact(node, j)
        if count != 1:
            return
        child_skip, child_ptr = node[used]
        if self.levels >= 1 << _SKIP_BITS and skip + child_skip >= 1 << _SKIP_BITS:
            return  # would not fit the 6-bit skip field
        cell[slot] = (0, child_ptr) if child_skip == 0 else (skip + child_skip, child_ptr)


def build_dispatch(view: FlatView, *, page_bits: int = DEFAULT_PAGE_BITS) -> Dispatch:
    """QEMU's dispatch for a rendered FlatView.

    :param page_bits: the target's ``TARGET_PAGE_BITS`` (12 on x86 and aarch64).
    :raise ModelError: QEMU could not build it (too many sections; overlapping ranges).
    """
    b = _Builder(page_bits)
    for i, r in enumerate(view.ranges):
        b.add_range(i, r)
    b.compact()
    return Dispatch(view.root, page_bits, b.levels, b.sections, b.nodes, b.root_cell[0])


def _printed_end(s: Section, region_ends: bool) -> int:
    size = s.size
    if region_ends and s.mr is not None and s.mr.size is not None:
        size = s.mr.size
    return (s.start + last(size)) & ((1 << 64) - 1)


def dump_dispatch(d: Dispatch, *, region_ends: bool = False) -> DispatchDump:
    """What ``mtree_print_dispatch`` prints for ``d`` (never `` [MRU]``: no run time).

    :param region_ends: print each section's end from its region's size, as QEMU 5.2
        did (:attr:`qmirror.text.dialect.Dialect.dispatch_region_ends`).
    """
    sections = [
        DispatchSectionLine(
            i,
            s.start,
            _printed_end(s, region_ends),
            s.name,
            DISPATCH_LABELS[i] if i < len(DISPATCH_LABELS) else "",
            root=s.mr is not None and s.mr is d.root,
            iommu=s.mr is not None and s.mr.kind is RegionKind.IOMMU,
            # A FlatRange's region is never an alias, so ` alias=` never appears.
            alias=None if s.mr is None or s.mr.alias is None else s.mr.alias.name or "noname",
        )
        for i, s in enumerate(d.sections)
    ]
    skip, ptr = d.phys_map
    nodes = [DispatchNode(i, list(entry_runs(n))) for i, n in enumerate(d.nodes)]
    return DispatchDump(
        sections, DispatchNodesLine(LEVEL_BITS, d.levels, ptr, skip), nodes, built=list(d.sections)
    )


def iommu_evidence(view: FlatView, qemu: DispatchDump) -> list[tuple[MemoryRegion, str]]:
    """Regions that QEMU's dump marks `` [iommu]`` and our model does not know as IOMMUs.

    The tree prints an IOMMU region like any ``i/o`` region (text gap G1); the dump is
    the only text that tells them apart. Each region comes once, with the evidence.
    """
    starts = [r.start for r in view.ranges]
    found: dict[MemoryRegion, tuple[MemoryRegion, str]] = {}
    for s in qemu.sections:
        if not s.iommu:
            continue
        k = bisect.bisect_right(starts, s.start) - 1
        if k < 0 or view.ranges[k].end <= s.start:
            continue
        mr = view.ranges[k].mr
        if mr.kind is RegionKind.IOMMU or (mr.name or "(noname)") != s.name or mr in found:
            continue
        found[mr] = (
            mr,
            f"QEMU's -d marks section #{s.index} '{s.name}' at {hex16(s.start)} [iommu]",
        )
    return list(found.values())


# -- comparison -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispatchDiff:
    """One difference between QEMU's dump and ours.

    :param where: ``"section #7"``, ``"nodes"``, ``"node [3] entries 1..2"``.
    :param kind: ``"missing"`` (only QEMU has it), ``"extra"`` (only we do), ``"changed"``.
    """

    where: str
    kind: str
    qemu: str | None
    ours: str | None
    explanation: str = ""


#: Section fields compared (` [MRU]` never is).
SECTION_FIELDS = ("start", "end", "name", "label", "root", "iommu", "alias")


def _section_text(s: DispatchSectionLine) -> str:
    return format_dispatch_section(
        DispatchSectionLine(
            s.index, s.start, s.end, s.name, s.label, s.root, False, s.iommu, s.alias
        )
    ).strip()


def _why(ours: DispatchDump, index: int) -> str:
    if index >= len(ours.built):
        return ""
    s = ours.built[index]
    assert isinstance(s, Section)
    if s.kind is SectionKind.UNASSIGNED:
        return "ours: the unassigned section"
    what = s.kind.value
    if s.kind is SectionKind.SUBPAGE:
        what += f" for page {hex16(s.start)}"
    return f"ours: {what} of FlatRange #{s.range_index}"


def _entry_text(skip: int, ptr: int) -> str:
    target = "NIL" if ptr == DISPATCH_NIL else f"#{ptr}" if skip == 0 else f"[{ptr}]"
    return f"skip={skip} ptr={target}"


def diff_dispatch(ours: DispatchDump, qemu: DispatchDump) -> list[DispatchDiff]:
    """Field-by-field differences; `` [MRU]`` is ignored, stale labels compare as printed."""
    diffs: list[DispatchDiff] = []
    for i in range(max(len(ours.sections), len(qemu.sections))):
        o = ours.sections[i] if i < len(ours.sections) else None
        q = qemu.sections[i] if i < len(qemu.sections) else None
        where = f"section #{i}"
        if o is None:
            assert q is not None
            diffs.append(DispatchDiff(where, "missing", _section_text(q), None))
        elif q is None:
            diffs.append(DispatchDiff(where, "extra", None, _section_text(o), _why(ours, i)))
        else:
            fields = [f for f in SECTION_FIELDS if getattr(o, f) != getattr(q, f)]
            if fields:
                diffs.append(
                    DispatchDiff(
                        where,
                        "changed",
                        _section_text(q),
                        _section_text(o),
                        f"{', '.join(fields)} differ; {_why(ours, i)}",
                    )
                )
    oh, qh = ours.nodes_line, qemu.nodes_line
    if (oh.bits, oh.levels, oh.ptr, oh.skip) != (qh.bits, qh.levels, qh.ptr, qh.skip):
        diffs.append(
            DispatchDiff(
                "nodes",
                "changed",
                format_dispatch_nodes(qh).strip(),
                format_dispatch_nodes(oh).strip(),
                "the root entry differs",
            )
        )
    for i in range(max(len(ours.nodes), len(qemu.nodes))):
        on = ours.nodes[i] if i < len(ours.nodes) else None
        qn = qemu.nodes[i] if i < len(qemu.nodes) else None
        if on is None or qn is None:
            diffs.append(
                DispatchDiff(
                    f"node [{i}]",
                    "missing" if on is None else "extra",
                    None if qn is None else f"{len(qn.runs)} runs",
                    None if on is None else f"{len(on.runs)} runs",
                )
            )
            continue
        oe, qe = on.entries(), qn.entries()
        j = 0
        while j < NODE_SIZE:
            if oe[j] == qe[j]:
                j += 1
                continue
            k = j
            while k + 1 < NODE_SIZE and oe[k + 1] == oe[j] and qe[k + 1] == qe[j]:
                k += 1
            span = f"{j}" if k == j else f"{j}..{k}"
            diffs.append(
                DispatchDiff(
                    f"node [{i}] entries {span}",
                    "changed",
                    _entry_text(*qe[j]),
                    _entry_text(*oe[j]),
                )
            )
            j = k + 1
    return diffs
