"""The line grammar of the ``-d`` dispatch dump that follows each FlatView of ``info mtree -f -d``.

Split from :mod:`qmirror.text.grammar` (which owns the tree and flat lines, the
shared literals and the diagnostics) so that each module stays one production
family; the dump as a whole is :mod:`qmirror.text.dispatch`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qmirror.errors import ParseError
from qmirror.text.grammar import HEX16_RE, expect_at, hex16


# -- dispatch lines (-d) ----------------------------------------------------------
#
# ``info mtree -f -d`` follows the ranges of each FlatView with its dispatch dump
# (reference §4.7; 7.2 ``mtree_print_dispatch``)::
#
#     dispatch   = "  Dispatch" EOL "    Physical sections" EOL section-line+
#                  nodes-line (node-line entry-line+)*
#     section-line = "      #" INT " @" HEX16 ".." HEX16 " " NAME [label] [" [ROOT]"]
#                    [" [MRU]"] [" [iommu]"] [" alias=" NAME]
#     label      = " [unassigned]" | " [not dirty]" | " [ROM]" | " [watch]"   (#0-#3 only,
#                                                      by index, whatever the section is)
#     nodes-line = "    Nodes (" INT " bits per level, " INT " levels) ptr=[" INT "] skip=" INT
#     node-line  = "      [" INT "]"
#     entry-line = TAB (%3d "      " | %3d ".." %-3d " ") " skip=" INT "  ptr=" ptr
#     ptr        = "NIL" | "#" INT (a section, skip 0) | "[" INT "]" (a node)
#
# Names are free text, so section lines are taken apart from the right. Every parsed
# line is printed again and compared with the input: QEMU's padding is the grammar.

DISPATCH_HEAD = "  Dispatch"
DISPATCH_SECTIONS_HEAD = "    Physical sections"
#: Labels QEMU prints for sections #0-#3 by index (stale since QEMU 4.2 for #1-#3).
DISPATCH_LABELS = (" [unassigned]", " [not dirty]", " [ROM]", " [watch]")
#: ``PHYS_MAP_NODE_NIL``: the 26-bit all-ones pointer of an entry that leads nowhere.
DISPATCH_NIL = (1 << 26) - 1

# Reliability fix (issue 6): numbers are bounded (\d{1,20}) so that int() never meets
# the thousands of digits it refuses with a ValueError.
_DISPATCH_SECTION = re.compile(
    rf"      #(?P<index>\d{{1,20}}) @(?P<start>{HEX16_RE})\.\.(?P<end>{HEX16_RE}) (?P<rest>.*)\Z",
    re.DOTALL,
)
_DISPATCH_SECTION_TAIL = re.compile(
    r"(?P<name>.*?)(?P<label> \[(?:unassigned|not dirty|ROM|watch)\])?(?P<root> \[ROOT\])?"
    r"(?P<mru> \[MRU\])?(?P<iommu> \[iommu\])?(?: alias=(?P<alias>.*))?\Z",
    re.DOTALL,
)
_DISPATCH_NODES = re.compile(
    r"    Nodes \((?P<bits>\d{1,20}) bits per level, (?P<levels>\d{1,20}) levels\) "
    r"ptr=\[(?P<ptr>\d{1,20})\] skip=(?P<skip>\d{1,20})\Z"
)
_DISPATCH_NODE = re.compile(r"      \[(?P<index>\d{1,20})\]\Z")
_DISPATCH_ENTRY = re.compile(
    r"\t *(?P<first>\d{1,20})(?:\.\.(?P<last>\d{1,20}))? +skip=(?P<skip>\d{1,20}) +"
    r"ptr=(?:(?P<nil>NIL)|#(?P<section>\d{1,20})|\[(?P<node>\d{1,20})\])\Z"
)


@dataclass(frozen=True, slots=True)
class DispatchSectionLine:
    """``      #i @START..END NAME[label][ [ROOT]][ [MRU]][ [iommu]][ alias=A]``."""

    index: int
    start: int
    end: int
    name: str
    #: `` [not dirty]`` etc. with its leading space, or ``""`` (#4 on).
    label: str = ""
    root: bool = False
    mru: bool = False
    iommu: bool = False
    alias: str | None = None
    lineno: int = 0


@dataclass(frozen=True, slots=True)
class DispatchNodesLine:
    """``    Nodes (B bits per level, L levels) ptr=[P] skip=S``: the root entry."""

    bits: int
    levels: int
    ptr: int
    skip: int
    lineno: int = 0


@dataclass(frozen=True, slots=True)
class DispatchEntryLine:
    """A run of equal entries ``first..last`` of one node (``last == first`` for one)."""

    first: int
    last: int
    skip: int
    #: A section index (``skip == 0``), a node index, or :data:`DISPATCH_NIL`.
    ptr: int
    lineno: int = 0


def format_dispatch_section(line: DispatchSectionLine) -> str:
    """One section line of the dispatch dump, without the line ending."""
    text = (
        f"      #{line.index} @{hex16(line.start)}..{hex16(line.end)} {line.name}"
        f"{line.label}{' [ROOT]' if line.root else ''}{' [MRU]' if line.mru else ''}"
        f"{' [iommu]' if line.iommu else ''}"
    )
    if line.alias is not None:
        text += f" alias={line.alias}"
    return text


def format_dispatch_nodes(line: DispatchNodesLine) -> str:
    return (
        f"    Nodes ({line.bits} bits per level, {line.levels} levels) "
        f"ptr=[{line.ptr}] skip={line.skip}"
    )


def format_dispatch_node(index: int) -> str:
    return f"      [{index}]"


def format_dispatch_entry(line: DispatchEntryLine) -> str:
    """One run line: QEMU pads the index part to nine characters."""
    if line.first == line.last:
        head = f"\t{line.first:3d}      "
    else:
        head = f"\t{line.first:3d}..{line.last:<3d} "
    if line.ptr == DISPATCH_NIL:
        ptr = "NIL"
    elif line.skip == 0:
        ptr = f"#{line.ptr}"
    else:
        ptr = f"[{line.ptr}]"
    return f"{head} skip={line.skip}  ptr={ptr}"


def _same_as_printed(
    text: str, printed: str, lineno: int, what: str, filename: str | None = None
) -> None:
    """Reject a line whose fields parse but whose spelling is not QEMU's."""
    if text == printed:
        return
    col = next(
        (i for i, (a, b) in enumerate(zip(text, printed, strict=False)) if a != b),
        min(len(text), len(printed)),
    )
    want = repr(printed[col]) if col < len(printed) else "end of line"
    raise ParseError(
        f"{what}: QEMU prints {want} here",
        line=lineno,
        column=col + 1,
        source_line=text,
        filename=filename,
    )


def parse_dispatch_section(
    text: str, lineno: int, expected_index: int | None = None, filename: str | None = None
) -> DispatchSectionLine:
    """Parse a section line; the label must be the one QEMU prints for its index.

    :param expected_index: the index this line must have (sections come in order).
    :raise ParseError: not a section line, another index, or a label that does not
        belong to the index.
    """
    m = _DISPATCH_SECTION.match(text)
    if m is None:
        if not text.startswith("      #"):
            raise expect_at(text, 0, lineno, "a section line '      #N @START..END NAME'", filename)
        raise ParseError(
            "expected '#N @START..END NAME' with 16-digit lower-case hex addresses",
            line=lineno,
            column=8,
            source_line=text,
            filename=filename,
        )
    index = int(m["index"])
    if expected_index is not None and index != expected_index:
        raise ParseError(
            f"expected section #{expected_index}",
            line=lineno,
            column=8,
            source_line=text,
            filename=filename,
        )
    t = _DISPATCH_SECTION_TAIL.match(m["rest"])
    assert t is not None  # every part is optional
    name, label = t["name"], t["label"] or ""
    expected = DISPATCH_LABELS[index] if index < len(DISPATCH_LABELS) else ""
    if label != expected:
        if index >= len(DISPATCH_LABELS):
            name, label = name + label, ""  # a name that happens to end like a label
        else:
            col = m.start("rest") + len(name) + 1
            raise ParseError(
                f"QEMU labels section #{index} '{expected.strip()}'",
                line=lineno,
                column=col,
                source_line=text,
                filename=filename,
            )
    if not name:
        raise expect_at(text, m.start("rest"), lineno, "the section's region name", filename)
    line = DispatchSectionLine(
        index,
        int(m["start"], 16),
        int(m["end"], 16),
        name,
        label,
        t["root"] is not None,
        t["mru"] is not None,
        t["iommu"] is not None,
        t["alias"],
        lineno,
    )
    _same_as_printed(text, format_dispatch_section(line), lineno, "section line", filename)
    return line


def parse_dispatch_nodes(text: str, lineno: int, filename: str | None = None) -> DispatchNodesLine:
    """Parse ``    Nodes (9 bits per level, 6 levels) ptr=[3] skip=4``."""
    m = _DISPATCH_NODES.match(text)
    if m is None:
        raise ParseError(
            "expected '    Nodes (B bits per level, L levels) ptr=[P] skip=S'",
            line=lineno,
            column=1,
            source_line=text,
            filename=filename,
        )
    line = DispatchNodesLine(
        int(m["bits"]), int(m["levels"]), int(m["ptr"]), int(m["skip"]), lineno
    )
    _same_as_printed(text, format_dispatch_nodes(line), lineno, "nodes line", filename)
    return line


def parse_dispatch_node(text: str, lineno: int, filename: str | None = None) -> int:
    """Parse ``      [N]`` and return ``N``."""
    m = _DISPATCH_NODE.match(text)
    if m is None:
        raise ParseError(
            "expected a node line '      [N]'",
            line=lineno,
            column=1,
            source_line=text,
            filename=filename,
        )
    index = int(m["index"])
    _same_as_printed(text, format_dispatch_node(index), lineno, "node line", filename)
    return index


def parse_dispatch_entry(text: str, lineno: int, filename: str | None = None) -> DispatchEntryLine:
    """Parse a run line (tab, index or run, ``skip=``, ``ptr=``), padding included."""
    m = _DISPATCH_ENTRY.match(text)
    if m is None:
        if not text.startswith("\t"):
            raise expect_at(text, 0, lineno, "a tab (an entry line of a node)", filename)
        raise ParseError(
            "expected an entry line 'FIRST[..LAST]  skip=S  ptr=NIL|#S|[N]'",
            line=lineno,
            column=2,
            source_line=text,
            filename=filename,
        )
    first = int(m["first"])
    last = int(m["last"]) if m["last"] is not None else first
    skip = int(m["skip"])
    if m["nil"] is not None:
        ptr = DISPATCH_NIL
    else:
        ptr = int(m["section"] if m["section"] is not None else m["node"])
        if (m["section"] is not None) != (skip == 0):
            col = m.start("section" if m["section"] is not None else "node")
            raise ParseError(
                "QEMU prints '#S' for skip=0 (a section) and '[N]' otherwise",
                line=lineno,
                column=col,
                source_line=text,
                filename=filename,
            )
    line = DispatchEntryLine(first, last, skip, ptr, lineno)
    if m["last"] is not None and last == first:
        raise ParseError(
            "a run of one entry is printed without '..'",
            line=lineno,
            column=m.start("last") - 1,
            source_line=text,
            filename=filename,
        )
    _same_as_printed(text, format_dispatch_entry(line), lineno, "entry line", filename)
    return line
