"""The ``info mtree -f -d`` dispatch dump as text: its structure, printer and parser.

QEMU prints each FlatView's dispatch structure (reference §4.7): the section table,
then the radix tree's nodes as runs of equal entries. :func:`format_dispatch` prints a
:class:`DispatchDump` exactly as QEMU does, :func:`parse_dispatch` reads QEMU's. What
the dump *means* (building it from a FlatView, comparing two) is
:mod:`qmirror.sim.dispatch`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from qmirror.errors import ParseError
from qmirror.text.dispatchlines import (
    DISPATCH_HEAD,
    DISPATCH_SECTIONS_HEAD,
    DispatchEntryLine,
    DispatchNodesLine,
    DispatchSectionLine,
    format_dispatch_entry,
    format_dispatch_node,
    format_dispatch_nodes,
    format_dispatch_section,
    parse_dispatch_entry,
    parse_dispatch_node,
    parse_dispatch_nodes,
    parse_dispatch_section,
)


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
#: A radix-tree entry: ``(skip, ptr)``. ``skip == 0``: ``ptr`` is a section index;
#: otherwise the number of levels to descend and a node index (or NIL).
Entry = tuple[int, int]


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
    #: Our :class:`qmirror.sim.dispatch.Section` objects behind ``sections`` (for
    #: explanations); empty for QEMU's dumps.
    built: list[object] = field(default_factory=list)


def entry_runs(node: Sequence[Entry]) -> Iterator[DispatchEntryLine]:
    """A node's entries as runs of equal ``(skip, ptr)``, as QEMU prints them."""
    first = 0
    for j in range(1, len(node) + 1):
        if j == len(node) or node[j] != node[first]:
            skip, ptr = node[first]
            yield DispatchEntryLine(first, j - 1, skip, ptr)
            first = j


def format_dispatch(dump: DispatchDump) -> list[str]:
    """The dump's lines, without line endings, exactly as QEMU prints them."""
    out = [DISPATCH_HEAD, DISPATCH_SECTIONS_HEAD]
    out.extend(format_dispatch_section(s) for s in dump.sections)
    out.append(format_dispatch_nodes(dump.nodes_line))
    for n in dump.nodes:
        out.append(format_dispatch_node(n.index))
        out.extend(format_dispatch_entry(r) for r in n.runs)
    return out


def parse_dispatch(
    lines: Sequence[str], lineno: int = 1, filename: str | None = None
) -> DispatchDump:
    """Parse the dispatch lines of one FlatView block.

    :param lines: from ``  Dispatch`` up to (not including) the blank line.
    :param lineno: the 1-based line number of ``lines[0]`` in its document.
    :param filename: the document's file, named in errors.
    :raise ParseError: with line, column and reason.
    """
    n = len(lines)

    def line_at(i: int) -> str:
        return lines[i] if i < n else ""

    def expect(i: int, text: str) -> None:
        if line_at(i) != text:
            got = line_at(i)
            col = next(
                (k for k, (a, b) in enumerate(zip(got, text, strict=False)) if a != b),
                min(len(got), len(text)),
            )
            raise ParseError(
                f"expected {text.strip()!r}" + ("" if i < n else ", found the end"),
                line=lineno + i,
                column=col + 1,
                source_line=got,
                filename=filename,
            )

    expect(0, DISPATCH_HEAD)
    expect(1, DISPATCH_SECTIONS_HEAD)
    i = 2
    sections: list[DispatchSectionLine] = []
    while i < n and lines[i].startswith("      #"):
        sections.append(parse_dispatch_section(lines[i], lineno + i, len(sections), filename))
        i += 1
    if not sections:
        raise ParseError(
            "expected section #0",
            line=lineno + i,
            column=1,
            source_line=line_at(i),
            filename=filename,
        )
    if i >= n:
        raise ParseError(
            "expected the 'Nodes (...)' line after the sections",
            line=lineno + i,
            column=1,
            filename=filename,
        )
    head = parse_dispatch_nodes(lines[i], lineno + i, filename)
    i += 1
    nodes: list[DispatchNode] = []
    while i < n:
        index = parse_dispatch_node(lines[i], lineno + i, filename)
        if index != len(nodes):
            raise ParseError(
                f"expected node [{len(nodes)}]",
                line=lineno + i,
                column=8,
                source_line=lines[i],
                filename=filename,
            )
        node = DispatchNode(index, [], lineno + i)
        i += 1
        while i < n and lines[i].startswith("\t"):
            run = parse_dispatch_entry(lines[i], lineno + i, filename)
            expected = node.runs[-1].last + 1 if node.runs else 0
            if expected == NODE_SIZE:
                raise ParseError(
                    f"expected a node line '      [{index + 1}]' after the "
                    f"{NODE_SIZE} entries of node [{index}]",
                    line=lineno + i,
                    column=1,
                    source_line=lines[i],
                    filename=filename,
                )
            if run.first != expected or run.last < run.first:
                raise ParseError(
                    f"expected the run of node [{index}] that starts at entry {expected}",
                    line=lineno + i,
                    column=2,
                    source_line=lines[i],
                    filename=filename,
                )
            node.runs.append(run)
            i += 1
        if not node.runs or node.runs[-1].last != NODE_SIZE - 1:
            raise ParseError(
                f"node [{index}] ends before entry {NODE_SIZE - 1}",
                line=lineno + i,
                column=1,
                source_line=line_at(i),
                filename=filename,
            )
        nodes.append(node)
    return DispatchDump(sections, head, nodes, lineno)


def subpage_sizes(dumps: Sequence[DispatchDump]) -> Counter[int]:
    """How many subpage containers of each size QEMU's dumps show.

    A subpage container is an unnamed section covering one aligned power-of-two
    block, immediately followed by the section that made QEMU create it, which starts
    inside it (its printed end says nothing where QEMU printed region sizes, as 5.2
    did: :attr:`qmirror.text.dialect.Dialect.dispatch_region_ends`).
    """
    sizes: Counter[int] = Counter()
    for dump in dumps:
        for a, b in zip(dump.sections[1:], dump.sections[2:], strict=False):
            size = a.end - a.start + 1
            if (
                a.name == "(noname)"
                and size & (size - 1) == 0
                and a.start % size == 0
                and a.start <= b.start <= a.end
            ):
                sizes[size] += 1
    return sizes


def infer_page_bits(dumps: Sequence[DispatchDump]) -> int | None:
    """The target page bits QEMU used: the size most of its subpage containers have."""
    sizes = subpage_sizes(dumps)
    if not sizes:
        return None
    size = sizes.most_common(1)[0][0]
    return size.bit_length() - 1


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
