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
from qmirror.text.dispatch import DispatchDump, format_dispatch
from qmirror.text.document import FlatViewBlock, read_flat
from qmirror.text.forgiving import PASTE_LIMIT, read_picked
from qmirror.text.grammar import (
    FLAT_AS_HEADER,
    FLATVIEW_HEADER,
    NO_FLATVIEW,
    NO_FLATVIEW_FOR,
    NO_ROOT,
    ROOT_PREFIX,
    ASLine,
    FlatRangeLine,
    format_as_line,
    format_flat_range,
    last,
)
from qmirror.text.pastetree import Section
from qmirror.text.reader import split_lines
from qmirror.text.repair import Repair, remap_error, repair


_RANGE_LIKE = re.compile(r"[0-9a-fA-F]{8,16}\\?-[0-9a-fA-F]{8,16} \(prio ")


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
    views, owners = read_flat(lines, filename, per_as=dia.flat == "per-as")
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
    sec, fixed, doc = read_picked(
        text,
        "flat",
        lambda t: parse_flat(t, filename=filename, dialect=dialect),
        filename=filename,
        error=error,
    )
    doc.repairs = fixed.repairs
    doc.paste = sec
    return doc


def print_flat(doc: FlatDocument) -> str:
    """Print a flat document exactly as QEMU prints ``info mtree -f``."""
    out: list[str] = []
    per_as = doc.dialect.flat == "per-as"
    for v in doc.views:
        if per_as:
            name = v.address_spaces[0].name
            out.append(FLAT_AS_HEADER + name)
            if not v.ranges:
                out.append(NO_FLATVIEW_FOR.format(name))
            out.extend(_range_lines(v, doc))
            out.append("")
            continue
        out.append(f"{FLATVIEW_HEADER}{v.number}")
        out.extend(format_as_line(a) for a in v.address_spaces)
        out.append(ROOT_PREFIX + (NO_ROOT if v.root is None else v.root))
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
