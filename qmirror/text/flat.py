"""Flat mode of ``info mtree -f [-o]``: read it, print it, and print our own FlatViews.

A :class:`FlatDocument` is the text's structure: FlatView blocks with their
`` AS`` lines, root line and ranges, and with ``-d`` the dispatch dump (kept
verbatim for printing, parsed by :mod:`qmirror.text.dispatch` for comparing). QEMU's
documents parse into one; our rendered FlatViews are turned into one by
:func:`document_from_views`; both print with :func:`print_flat`, so the comparison
and the output share one shape.

Block order and the order of `` AS`` lines are QEMU's hash and creation order
(reference §3.4), which a tree text does not reveal. Our own documents use a
deterministic order instead: views in the order of the first address space (in
the machine's address-space order) that uses each, `` AS`` lines in that order too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from qmirror.core.render import FlatRange, FlatView
from qmirror.errors import ParseError
from qmirror.text import dialect as dialects
from qmirror.text.dialect import Dialect
from qmirror.text.dispatch import DispatchDump, format_dispatch, parse_dispatch
from qmirror.text.forgiving import PASTE_LIMIT, pick_text
from qmirror.text.grammar import (
    FLAT_AS_HEADER,
    FLATVIEW_HEADER,
    NO_FLATVIEW,
    ROOT_PREFIX,
    ASLine,
    FlatRangeLine,
    format_as_line,
    format_flat_range,
    has_owner_suffix,
    is_region_line,
    last,
    parse_as_line,
    parse_flat_range,
)
from qmirror.text.pastetree import Section
from qmirror.text.repair import Repair, remap_error, repair
from qmirror.text.tree import split_lines


_RANGE_LIKE = re.compile(r"[0-9a-fA-F]{8,16}\\?-[0-9a-fA-F]{8,16} \(prio ")


@dataclass(slots=True)
class FlatViewBlock:
    """One ``FlatView #N`` block."""

    number: int
    address_spaces: list[ASLine]
    #: Name of the FlatView's root; ``None`` prints ``(none)``.
    root: str | None
    ranges: list[FlatRangeLine]
    #: The ``-d`` dispatch dump that follows the ranges, kept verbatim.
    dispatch: list[str] = field(default_factory=list)
    #: The same dump as structure (:mod:`qmirror.text.dispatch`); ``None`` without ``-d``.
    dispatch_dump: DispatchDump | None = None
    lineno: int = 0
    #: Our rendered ranges behind ``ranges`` (for explanations); empty for QEMU's.
    rendered: list[FlatRange] = field(default_factory=list)


@dataclass(slots=True)
class FlatDocument:
    """A ``-f`` text: its blocks and how it was printed.

    In the 2.9/2.10 layout (``dialect.flat == "per-as"``) each block is one address
    space (its only `` AS`` line has an empty root) and there is no root line.
    """

    views: list[FlatViewBlock]
    eol: str = "\r\n"
    final_eol: bool = True
    owners: bool = False
    dialect: Dialect = field(default_factory=lambda: dialects.DEFAULT)
    #: What ``lenient`` parsing repaired, with original line numbers.
    repairs: list[Repair] = field(default_factory=list)
    #: For a text read by the forgiving reader: the section it came from.
    paste: Section | None = None

    @property
    def partial(self) -> bool:
        """The text elides lines or lacks some (implied headers, `` AS`` or root lines)."""
        return self.paste is not None and self.paste.partial


def parse_flat(
    text: str, *, filename: str | None = None, dialect: Dialect | None = None, lenient: bool = False
) -> FlatDocument:
    """Parse ``info mtree -f [-d] [-o]`` output.

    :param dialect: the QEMU dialect (found from the text when ``None``).
    :param lenient: first repair pasting damage (:mod:`qmirror.text.repair`).
    :raise ParseError: with line, column and reason.
    """
    if lenient:
        if len(text) > PASTE_LIMIT:
            return parse_flat(text, filename=filename, dialect=dialect)
        try:  # intact QEMU output reads exactly as without `lenient`
            doc = parse_flat(text, filename=filename, dialect=dialect)
            if doc.views:
                return doc
        except ParseError:
            pass
        fixed = repair(text)
        try:
            doc = parse_flat(fixed.text, filename=filename, dialect=dialect)
        except ParseError as err:
            return forgiving_flat(
                text, filename=filename, dialect=dialect, error=remap_error(err, fixed, text)
            )
        if not doc.views or len(_RANGE_LIKE.findall(fixed.text)) < len(_RANGE_LIKE.findall(text)):
            # Empty, or the repair lost range lines: the forgiving reader keeps them.
            return forgiving_flat(text, filename=filename, dialect=dialect)
        doc.repairs = fixed.repairs
        return doc
    lines, eol, final_eol = split_lines(text, filename=filename)
    dia = dialect if dialect is not None else dialects.detect_flat(lines).dialect
    if dia.flat == "per-as":
        return _parse_per_as(lines, eol, final_eol, dia, filename)
    ranges = [ln for ln in lines if ln.startswith("  ") and is_region_line(ln)]
    owners = bool(ranges) and all(has_owner_suffix(ln) for ln in ranges)
    views: list[FlatViewBlock] = []
    i = 0
    n = len(lines)

    def fail(reason: str, at: int, column: int = 1) -> ParseError:
        src = lines[at] if at < n else ""
        return ParseError(reason, line=at + 1, column=column, source_line=src, filename=filename)

    try:
        while i < n:
            line = lines[i]
            # Reliability fix (issue 6): ASCII digits, and few enough for int() ("²" is
            # isdigit(), and int() refuses more than 4300 digits).
            number = line[10:]
            if (
                not line.startswith(FLATVIEW_HEADER)
                or not number.isascii()
                or not number.isdigit()
                or len(number) > 9
            ):
                raise fail("expected 'FlatView #N'", i)
            block = FlatViewBlock(int(line[10:]), [], None, [], lineno=i + 1)
            i += 1
            while i < n and lines[i].startswith(' AS "'):
                block.address_spaces.append(parse_as_line(lines[i], i + 1))
                i += 1
            if not block.address_spaces:
                raise fail("expected ' AS \"NAME\", root: ROOT' after 'FlatView #N'", i)
            if i >= n or not lines[i].startswith(ROOT_PREFIX):
                raise fail(f"expected '{ROOT_PREFIX.strip()} NAME'", i)
            root = lines[i][len(ROOT_PREFIX) :]
            block.root = None if root == "(none)" else root
            i += 1
            if i < n and lines[i] == NO_FLATVIEW:
                i += 1
            else:
                while i < n and lines[i].startswith("  ") and is_region_line(lines[i]):
                    block.ranges.append(parse_flat_range(lines[i], i + 1, owners=owners))
                    i += 1
                if not block.ranges:
                    raise fail(f"expected range lines or '{NO_FLATVIEW.strip()}'", i)
                while i < n and lines[i] != "":
                    if not lines[i].startswith(("  Dispatch", "    ", "\t")):
                        raise fail("expected a range line, the dispatch dump or a blank line", i)
                    block.dispatch.append(lines[i])
                    i += 1
                if block.dispatch:
                    first = i + 1 - len(block.dispatch)
                    block.dispatch_dump = parse_dispatch(block.dispatch, first)
            if i >= n or lines[i] != "":
                raise fail("expected the blank line that ends a FlatView block", i)
            i += 1
            views.append(block)
    except ParseError as err:
        if err.filename is None:
            err.filename = filename
        raise
    return FlatDocument(views, eol, final_eol, owners, dia)


def forgiving_flat(
    text: str,
    *,
    filename: str | None = None,
    dialect: Dialect | None = None,
    error: ParseError | None = None,
) -> FlatDocument:
    """Read the flat text of a paste with the forgiving reader (:mod:`qmirror.text.forgiving`).

    :param error: what the strict reading said, raised if the forgiving one fails too.
    :raise ParseError: no flat text in the paste, or one that still does not parse.
    """
    sec, fixed = pick_text(text, "flat", filename=filename, error=error)
    try:
        doc = parse_flat(fixed.text, filename=filename, dialect=dialect)
    except ParseError as err:
        if error is not None:
            raise error from None
        raise remap_error(err, fixed, text) from None
    doc.repairs = fixed.repairs
    doc.paste = sec
    return doc


def _parse_per_as(
    lines: list[str], eol: str, final_eol: bool, dia: Dialect, filename: str | None
) -> FlatDocument:
    """QEMU 2.9/2.10: ``address-space (flat view): NAME`` then its ranges, per AS."""
    ranges = [ln for ln in lines if ln.startswith("  ") and is_region_line(ln)]
    owners = bool(ranges) and all(has_owner_suffix(ln) for ln in ranges)
    views: list[FlatViewBlock] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.startswith(FLAT_AS_HEADER):
            raise ParseError(
                f"expected '{FLAT_AS_HEADER}NAME'",
                line=i + 1,
                column=1,
                source_line=line,
                filename=filename,
            )
        name = line[len(FLAT_AS_HEADER) :]
        block = FlatViewBlock(len(views), [ASLine(name, "", None)], None, [], lineno=i + 1)
        i += 1
        if i < n and lines[i] == _no_view_for(name):
            i += 1
        else:
            while i < n and lines[i].startswith("  ") and is_region_line(lines[i]):
                block.ranges.append(parse_flat_range(lines[i], i + 1, owners=owners))
                i += 1
        if i >= n or lines[i] != "":
            raise ParseError(
                "expected a range line or the blank line that ends the block",
                line=i + 1,
                column=1,
                source_line=lines[i] if i < n else "",
                filename=filename,
            )
        i += 1
        views.append(block)
    return FlatDocument(views, eol, final_eol, owners, dia)


def _no_view_for(name: str) -> str:
    return f"  No rendered FlatView for address space '{name}'"


def print_flat(doc: FlatDocument) -> str:
    """Print a flat document exactly as QEMU prints ``info mtree -f``."""
    out: list[str] = []
    per_as = doc.dialect.flat == "per-as"
    for v in doc.views:
        if per_as:
            name = v.address_spaces[0].name
            out.append(FLAT_AS_HEADER + name)
            if not v.ranges:
                out.append(_no_view_for(name))
            out.extend(_range_lines(v, doc))
            out.append("")
            continue
        out.append(f"FlatView #{v.number}")
        out.extend(format_as_line(a) for a in v.address_spaces)
        out.append(ROOT_PREFIX + ("(none)" if v.root is None else v.root))
        if not v.ranges:
            out.append(NO_FLATVIEW)
        out.extend(_range_lines(v, doc))
        out.extend(v.dispatch)
        out.append("")
    text = doc.eol.join(out)
    return text + doc.eol if doc.final_eol and out else text


def _range_lines(v: FlatViewBlock, doc: FlatDocument) -> list[str]:
    return [
        format_flat_range(
            start=r.start,
            end=r.end,
            priority=r.priority,
            nonvolatile=r.nonvolatile,
            type_word=r.type_word,
            name=r.name,
            offset=r.offset,
            ownership=r.ownership if doc.owners else None,
            accel=r.accel,
        )
        for r in v.ranges
    ]


#: Given a view's address spaces and one of its ranges, the accelerator words QEMU
#: appends (one per address space the accelerator tracks that maps exactly that range).
AccelSuffix = Callable[[FlatView, FlatRange], tuple[str, ...]]


def document_from_views(
    views: list[FlatView],
    *,
    owners: bool = False,
    accel_suffix: AccelSuffix | None = None,
    dialect: Dialect = dialects.DEFAULT,
    eol: str = "\r\n",
    dispatch_of: Callable[[FlatView], DispatchDump] | None = None,
) -> FlatDocument:
    """Turn rendered FlatViews into the document QEMU would print for them.

    In the per-address-space layout of 2.9/2.10 each address space gets its own block
    (in the order of the views, then of their address spaces).

    :param dispatch_of: add the ``-d`` dump that this gives for each view with ranges
        (:func:`qmirror.sim.dispatch.build_dispatch`, then ``dump_dispatch``).
    """
    container_word = dialect.container_word
    if dialect.flat == "per-as":
        views = [FlatView(v.root, v.ranges, [a]) for v in views for a in v.address_spaces]
    blocks: list[FlatViewBlock] = []
    for n, view in enumerate(views):
        ases = [
            ASLine(
                a.name,
                a.root.label if a.root is not None else "(null)",
                a.root.alias.label if a.root is not None and a.root.alias is not None else None,
            )
            for a in view.address_spaces
        ]
        if dialect.flat == "per-as":
            ases = [ASLine(a.name, "", None) for a in ases]
        lines: list[FlatRangeLine] = []
        for r in view.ranges:
            mr = r.mr
            word = "rom" if r.readonly else mr.type_word(container_word=container_word)
            lines.append(
                FlatRangeLine(
                    lineno=0,
                    start=r.start,
                    end=r.start + last(r.size),
                    priority=mr.priority,
                    nonvolatile=r.nonvolatile,
                    type_word=word,
                    name=mr.label,
                    offset=r.offset_in_region,
                    ownership=mr.ownership if owners else None,
                    accel=accel_suffix(view, r) if accel_suffix is not None else (),
                )
            )
        root = None if view.root is None or dialect.flat == "per-as" else view.root.label
        block = FlatViewBlock(n, ases, root, lines, rendered=list(view.ranges))
        if dispatch_of is not None and view.root is not None and view.ranges:
            block.dispatch_dump = dispatch_of(view)
            block.dispatch = format_dispatch(block.dispatch_dump)
        blocks.append(block)
    return FlatDocument(blocks, eol, True, owners, dialect)
