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
:func:`dump_dispatch` and :func:`format_dispatch` give QEMU's text;
:func:`parse_dispatch` reads QEMU's; :func:`diff_dispatch` compares two dumps field
by field, ignoring `` [MRU]`` (which section the last lookup hit: run-time state).
"""

from __future__ import annotations

import bisect
import enum
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from qmirror.errors import ModelError, ParseError
from qmirror.grammar import (
    DISPATCH_HEAD,
    DISPATCH_LABELS,
    DISPATCH_NIL,
    DISPATCH_SECTIONS_HEAD,
    DispatchEntryLine,
    DispatchNodesLine,
    DispatchSectionLine,
    format_dispatch_entry,
    format_dispatch_node,
    format_dispatch_nodes,
    format_dispatch_section,
    hex16,
    last,
    parse_dispatch_entry,
    parse_dispatch_node,
    parse_dispatch_nodes,
    parse_dispatch_section,
)
from qmirror.model import SIZE_2_64, MemoryRegion, RegionKind
from qmirror.render import FlatRange, FlatView


#: Index bits per radix-tree level (``P_L2_BITS``).
LEVEL_BITS = 9
#: Entries per node.
NODE_SIZE = 1 << LEVEL_BITS
#: ``TARGET_PAGE_BITS`` of x86 and aarch64 ``virt``. ARM's page size is decided at run
#: time: 7.2 uses 1 KiB pages on vexpress-a9, versatilepb, raspi3b and xlnx-zcu102
#: (Observed), which the subpage sections of QEMU's dump show (:func:`infer_page_bits`).
DEFAULT_PAGE_BITS = 12
#: ``phys_section_add`` refuses the section that would make this many (it must fit
#: in the low bits of a page-aligned TLB entry).
_SKIP_BITS = 6

#: A radix-tree entry: ``(skip, ptr)``. ``skip == 0``: ``ptr`` is a section index;
#: otherwise the number of levels to descend and a node index (or NIL).
Entry = tuple[int, int]


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
            raise ModelError(f"more than {self.page} dispatch sections: QEMU would abort "
                             "(phys_section_add)")
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
            container = self._add(Section(base, self.page, None, SectionKind.SUBPAGE,
                                          section.range_index))
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

    def _set_level(self, cell: list[Entry], slot: int, todo: list[int], leaf: int,
                   level: int) -> None:
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


# -- the dump ---------------------------------------------------------------------


@dataclass(slots=True)
class DispatchNode:
    """One ``[N]`` block of the dump: its runs of equal entries."""

    index: int
    runs: list[DispatchEntryLine]
    lineno: int = 0

    def entries(self) -> list[Entry]:
        """The node's entries, expanded from the runs."""
        out: list[Entry] = []
        for run in self.runs:
            out.extend([(run.skip, run.ptr)] * (run.last - run.first + 1))
        return out


@dataclass(slots=True)
class DispatchDump:
    """The ``-d`` text of one FlatView, as structure."""

    sections: list[DispatchSectionLine]
    nodes_line: DispatchNodesLine
    nodes: list[DispatchNode]
    lineno: int = 0
    #: Our sections behind ``sections`` (for explanations); empty for QEMU's dumps.
    built: list[Section] = field(default_factory=list)


def _runs(node: Sequence[Entry]) -> Iterator[DispatchEntryLine]:
    first = 0
    for j in range(1, len(node) + 1):
        if j == len(node) or node[j] != node[first]:
            skip, ptr = node[first]
            yield DispatchEntryLine(first, j - 1, skip, ptr)
            first = j


def _printed_end(s: Section, region_ends: bool) -> int:
    size = s.size
    if region_ends and s.mr is not None and s.mr.size is not None:
        size = s.mr.size
    return (s.start + last(size)) & ((1 << 64) - 1)


def dump_dispatch(d: Dispatch, *, region_ends: bool = False) -> DispatchDump:
    """What ``mtree_print_dispatch`` prints for ``d`` (never `` [MRU]``: no run time).

    :param region_ends: print each section's end from its region's size, as QEMU 5.2
        did (:attr:`qmirror.dialect.Dialect.dispatch_region_ends`).
    """
    sections = [
        DispatchSectionLine(
            i, s.start, _printed_end(s, region_ends), s.name,
            DISPATCH_LABELS[i] if i < len(DISPATCH_LABELS) else "",
            root=s.mr is not None and s.mr is d.root,
            iommu=s.mr is not None and s.mr.kind is RegionKind.IOMMU,
            # A FlatRange's region is never an alias, so ` alias=` never appears.
            alias=None if s.mr is None or s.mr.alias is None else s.mr.alias.name or "noname")
        for i, s in enumerate(d.sections)]
    skip, ptr = d.phys_map
    nodes = [DispatchNode(i, list(_runs(n))) for i, n in enumerate(d.nodes)]
    return DispatchDump(sections, DispatchNodesLine(LEVEL_BITS, d.levels, ptr, skip), nodes,
                        built=list(d.sections))


def format_dispatch(dump: DispatchDump) -> list[str]:
    """The dump's lines, without line endings, exactly as QEMU prints them."""
    out = [DISPATCH_HEAD, DISPATCH_SECTIONS_HEAD]
    out.extend(format_dispatch_section(s) for s in dump.sections)
    out.append(format_dispatch_nodes(dump.nodes_line))
    for n in dump.nodes:
        out.append(format_dispatch_node(n.index))
        out.extend(format_dispatch_entry(r) for r in n.runs)
    return out


def parse_dispatch(lines: Sequence[str], lineno: int = 1) -> DispatchDump:
    """Parse the dispatch lines of one FlatView block.

    :param lines: from ``  Dispatch`` up to (not including) the blank line.
    :param lineno: the 1-based line number of ``lines[0]`` in its document.
    :raise ParseError: with line, column and reason.
    """
    n = len(lines)

    def line_at(i: int) -> str:
        return lines[i] if i < n else ""

    def expect(i: int, text: str) -> None:
        if line_at(i) != text:
            got = line_at(i)
            col = next((k for k, (a, b) in enumerate(zip(got, text, strict=False)) if a != b),
                       min(len(got), len(text)))
            raise ParseError(f"expected {text.strip()!r}" + ("" if i < n else ", found the end"),
                             line=lineno + i, column=col + 1, source_line=got)

    expect(0, DISPATCH_HEAD)
    expect(1, DISPATCH_SECTIONS_HEAD)
    i = 2
    sections: list[DispatchSectionLine] = []
    while i < n and lines[i].startswith("      #"):
        sections.append(parse_dispatch_section(lines[i], lineno + i, len(sections)))
        i += 1
    if not sections:
        raise ParseError("expected section #0", line=lineno + i, column=1,
                         source_line=line_at(i))
    if i >= n:
        raise ParseError("expected the 'Nodes (...)' line after the sections",
                         line=lineno + i, column=1)
    head = parse_dispatch_nodes(lines[i], lineno + i)
    i += 1
    nodes: list[DispatchNode] = []
    while i < n:
        index = parse_dispatch_node(lines[i], lineno + i)
        if index != len(nodes):
            raise ParseError(f"expected node [{len(nodes)}]", line=lineno + i, column=8,
                             source_line=lines[i])
        node = DispatchNode(index, [], lineno + i)
        i += 1
        while i < n and lines[i].startswith("\t"):
            run = parse_dispatch_entry(lines[i], lineno + i)
            expected = node.runs[-1].last + 1 if node.runs else 0
            if expected == NODE_SIZE:
                raise ParseError(f"expected a node line '      [{index + 1}]' after the "
                                 f"{NODE_SIZE} entries of node [{index}]", line=lineno + i,
                                 column=1, source_line=lines[i])
            if run.first != expected or run.last < run.first:
                raise ParseError(f"expected the run of node [{index}] that starts at entry "
                                 f"{expected}", line=lineno + i, column=2, source_line=lines[i])
            node.runs.append(run)
            i += 1
        if not node.runs or node.runs[-1].last != NODE_SIZE - 1:
            raise ParseError(f"node [{index}] ends before entry {NODE_SIZE - 1}",
                             line=lineno + i, column=1, source_line=line_at(i))
        nodes.append(node)
    return DispatchDump(sections, head, nodes, lineno)


def subpage_sizes(dumps: Sequence[DispatchDump]) -> Counter[int]:
    """How many subpage containers of each size QEMU's dumps show.

    A subpage container is an unnamed section covering one aligned power-of-two
    block, immediately followed by the section that made QEMU create it, which starts
    inside it (its printed end says nothing where QEMU printed region sizes, as 5.2
    did: :attr:`qmirror.dialect.Dialect.dispatch_region_ends`).
    """
    sizes: Counter[int] = Counter()
    for dump in dumps:
        for a, b in zip(dump.sections[1:], dump.sections[2:], strict=False):
            size = a.end - a.start + 1
            if (a.name == "(noname)" and size & (size - 1) == 0 and a.start % size == 0
                    and a.start <= b.start <= a.end):
                sizes[size] += 1
    return sizes


def infer_page_bits(dumps: Sequence[DispatchDump]) -> int | None:
    """The target page bits QEMU used: the size most of its subpage containers have."""
    sizes = subpage_sizes(dumps)
    if not sizes:
        return None
    size = sizes.most_common(1)[0][0]
    return size.bit_length() - 1


def iommu_evidence(view: FlatView, qemu: DispatchDump) -> list[tuple[MemoryRegion, str]]:
    """Regions that QEMU's dump marks `` [iommu]`` and our model does not know as IOMMUs.

    The tree prints an IOMMU region like any ``i/o`` region (text gap G1); the dump is
    the only text that tells them apart. Each region comes once, with the evidence.
    """
    starts = [r.start for r in view.ranges]
    found: dict[int, tuple[MemoryRegion, str]] = {}
    for s in qemu.sections:
        if not s.iommu:
            continue
        k = bisect.bisect_right(starts, s.start) - 1
        if k < 0 or view.ranges[k].end <= s.start:
            continue
        mr = view.ranges[k].mr
        if mr.kind is RegionKind.IOMMU or (mr.name or "(noname)") != s.name or id(mr) in found:
            continue
        found[id(mr)] = (mr, f"QEMU's -d marks section #{s.index} '{s.name}' at "
                             f"{hex16(s.start)} [iommu]")
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
    return format_dispatch_section(DispatchSectionLine(
        s.index, s.start, s.end, s.name, s.label, s.root, False, s.iommu, s.alias)).strip()


def _why(ours: DispatchDump, index: int) -> str:
    if index >= len(ours.built):
        return ""
    s = ours.built[index]
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
                diffs.append(DispatchDiff(where, "changed", _section_text(q), _section_text(o),
                                          f"{', '.join(fields)} differ; {_why(ours, i)}"))
    oh, qh = ours.nodes_line, qemu.nodes_line
    if (oh.bits, oh.levels, oh.ptr, oh.skip) != (qh.bits, qh.levels, qh.ptr, qh.skip):
        diffs.append(DispatchDiff("nodes", "changed", format_dispatch_nodes(qh).strip(),
                                  format_dispatch_nodes(oh).strip(), "the root entry differs"))
    for i in range(max(len(ours.nodes), len(qemu.nodes))):
        on = ours.nodes[i] if i < len(ours.nodes) else None
        qn = qemu.nodes[i] if i < len(qemu.nodes) else None
        if on is None or qn is None:
            diffs.append(DispatchDiff(f"node [{i}]", "missing" if on is None else "extra",
                                      None if qn is None else f"{len(qn.runs)} runs",
                                      None if on is None else f"{len(on.runs)} runs"))
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
            diffs.append(DispatchDiff(f"node [{i}] entries {span}", "changed",
                                      _entry_text(*qe[j]), _entry_text(*oe[j])))
            j = k + 1
    return diffs


def strip_mru(lines: Sequence[str]) -> list[str]:
    """Dump lines with `` [MRU]`` taken off the section lines (for byte comparisons)."""
    out = []
    for i, ln in enumerate(lines):
        if ln.startswith("      #"):
            s = parse_dispatch_section(ln, i + 1)
            if s.mru:
                ln = format_dispatch_section(replace(s, mru=False))
        out.append(ln)
    return out
