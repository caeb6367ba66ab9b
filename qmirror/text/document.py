"""The document structure of ``info mtree`` text: one grammar for tree and flat documents.

Each production is a function of a :class:`~qmirror.text.reader.Reader` whose
docstring gives its grammar; it consumes the lines it recognises and, where the
text breaks the grammar, raises the reader's error for the line it stands on. The
lines themselves (region lines, range lines, `` AS`` lines) are the line grammar's
(:mod:`qmirror.text.grammar`); the ``-d`` dump inside a FlatView is
:mod:`qmirror.text.dispatch`'s. Every literal comes from the line grammar. The whole
grammar, with the dialects' differences, is in ``docs/grammar.md``.

Tree documents (:func:`read_tree`)::

    tree-document   := prefixed-tree | bare-tree
    prefixed-tree   := tree-block*                                  (QEMU 2.4+)
    tree-block      := as-header+ region-line* blank
                     | mr-header region-line* blank
    as-header       := "address-space: " NAME
    mr-header       := "memory-region: " NAME
    blank           := OVERFLOW* EOL         (a hidden region's markers stick to it)
    bare-tree       := bare-block* ["aliases" EOL bare-block*]      (QEMU 1.3-2.3)
    bare-block      := NAME EOL region-line*

Flat documents (:func:`read_flat`)::

    flat-document   := flatview* | per-as-block*
    flatview        := "FlatView #" INT EOL as-line+ root-line view-body blank  (2.11+)
    root-line       := " Root memory region: " (NAME | "(none)") EOL
    view-body       := "  No rendered FlatView" EOL | range-line+ dispatch-line*
    per-as-block    := "address-space (flat view): " NAME EOL               (2.9, 2.10)
                       ("  No rendered FlatView for address space '" NAME "'" EOL
                        | range-line*) blank

The productions return the blocks; :mod:`qmirror.text.tree` and
:mod:`qmirror.text.flat` wrap them into documents with what the text says about its
flags and dialect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qmirror.core.render import FlatRange
from qmirror.errors import ParseError
from qmirror.text.dialect import Dialect
from qmirror.text.dispatch import DispatchDump, parse_dispatch
from qmirror.text.grammar import (
    ALIASES_HEADER,
    AS_HEADER,
    AS_LINE_PREFIX,
    DISPATCH_STARTS,
    FLAT_AS_HEADER,
    FLATVIEW_HEADER,
    FLATVIEW_NUMBER_DIGITS,
    MR_HEADER,
    NO_FLATVIEW,
    NO_FLATVIEW_FOR,
    NO_ROOT,
    RANGE_INDENT,
    ROOT_PREFIX,
    ASLine,
    FlatRangeLine,
    TreeLine,
    has_owner_suffix,
    is_region_line,
    parse_as_line,
    parse_flat_range,
    region_line,
    strip_overflow,
)
from qmirror.text.reader import Reader


# -- tree documents -----------------------------------------------------------------


@dataclass(slots=True)
class TreeBlock:
    """One block: ``address-space:`` headers (a group) or a ``memory-region:`` header."""

    is_region_block: bool
    names: list[str]
    header_lineno: int
    lines: list[TreeLine] = field(default_factory=list)
    #: ``[DETECTED OVERFLOW!]`` markers on the blank line that closes the block.
    closing_overflow: int = 0


_EXPECTED_HEADER = "expected a header ('address-space: NAME' or 'memory-region: NAME')"


def read_tree(
    lines: list[str],
    filename: str | None,
    *,
    prefixed: bool,
    dialect: Dialect | None,
) -> tuple[list[TreeBlock], bool]:
    """``tree-document := prefixed-tree | bare-tree``: the blocks, and whether the text
    was printed with ``-o`` (every region line has an owner suffix).

    :param prefixed: the text has ``address-space:`` headers (QEMU 2.4+); otherwise bare
        ones, over trees that start at indentation level 0.
    :param dialect: the dialect the caller says the text is in, if any.
    """
    first = next((ln for ln in lines if is_region_line(ln)), None)
    owners = first is not None and has_owner_suffix(first)
    try:
        return _tree_blocks(Reader(lines, filename), owners, prefixed, dialect), owners
    except ParseError:
        if not owners:
            raise
    # The first line's name only looked like an owner suffix: read again without -o.
    return _tree_blocks(Reader(lines, filename), False, prefixed, dialect), False


def _tree_blocks(
    r: Reader, owners: bool, prefixed: bool, dialect: Dialect | None
) -> list[TreeBlock]:
    if not prefixed:
        return bare_tree(r, owners)
    blocks: list[TreeBlock] = []
    while not r.at_end():
        blocks.append(tree_block(r, owners, dialect))
    return blocks


def tree_block(r: Reader, owners: bool, dialect: Dialect | None) -> TreeBlock:
    """``tree-block := as-header+ region-line* blank | mr-header region-line* blank``

    Two ``address-space:`` headers over one tree are QEMU 7.0+ output: refused when
    the caller gave an older ``dialect``.
    """
    header_lineno = r.lineno
    if r.check(MR_HEADER):
        block = TreeBlock(True, [r.take()[len(MR_HEADER) :]], header_lineno)
    elif r.check(AS_HEADER):
        block = TreeBlock(False, [r.take()[len(AS_HEADER) :]], header_lineno)
        while r.check(AS_HEADER):
            if dialect is not None and not dialect.grouped:
                raise r.error(
                    "two address-space headers over one tree: that is QEMU 7.0+ "
                    f"output, not {dialect}"
                )
            block.names.append(r.take()[len(AS_HEADER) :])
    elif _is_blank(r.peek()):
        raise r.error("blank line before any block")
    else:
        raise r.error(_EXPECTED_HEADER)
    block.closing_overflow = _region_lines(r, block.lines, owners)
    return block


def _region_lines(r: Reader, out: list[TreeLine], owners: bool) -> int:
    """``region-line* blank``: the block's region lines into ``out``; return the
    overflow markers of the blank line that ends the block.

    The hot loop of big trees: a run of indented lines is read without a call to the
    reader per line, and the reader moved to where the run stopped.
    """
    lines = r.lines
    n = len(lines)
    filename = r.filename
    append = out.append
    pos = r.pos
    while pos < n:
        raw = lines[pos]
        pos += 1
        if raw[:1] == " ":  # the common case: a region line
            append(region_line(raw, pos, owners, 1, filename))
            continue
        r.skip_to(pos - 1)
        if _is_blank(raw):
            r.skip()
            return strip_overflow(raw)[0]
        if raw.startswith((AS_HEADER, MR_HEADER)):
            raise r.error("missing blank line before this header")
        append(region_line(raw, pos, owners, 1, filename))
    r.skip_to(pos)
    raise r.error("the last block is not closed by a blank line (QEMU ends every block with one)")


def _is_blank(line: str | None) -> bool:
    """``blank := OVERFLOW* EOL``"""
    return line is not None and (line == "" or (line[:1] == "[" and strip_overflow(line)[1] == ""))


def bare_tree(r: Reader, owners: bool) -> list[TreeBlock]:
    """``bare-tree := bare-block* ["aliases" EOL bare-block*]`` (QEMU 1.3-2.3)

    ``bare-block := NAME EOL region-line*``: a bare header line (the address space's
    or the aliased region's name) before each tree, whose root is at level 0; no blank
    lines.
    """
    blocks: list[TreeBlock] = []
    in_aliases = False
    while not r.at_end():
        if r.check_line(""):
            raise r.error("blank line: QEMU before 2.4 prints none")
        if not in_aliases and r.check_line(ALIASES_HEADER):
            r.skip()
            in_aliases = True
            continue
        if is_region_line(r.lines[r.pos]):
            raise r.error("a region line before any header")
        block = TreeBlock(in_aliases, [r.take()], r.pos)
        while not r.at_end() and is_region_line(r.lines[r.pos]):
            block.lines.append(region_line(r.lines[r.pos], r.lineno, owners, 0, r.filename))
            r.skip()
        blocks.append(block)
    return blocks


# -- flat documents -----------------------------------------------------------------


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


def read_flat(
    lines: list[str], filename: str | None, *, per_as: bool
) -> tuple[list[FlatViewBlock], bool]:
    """``flat-document := flatview* | per-as-block*``: the blocks, and whether the text
    was printed with ``-o`` (every range line has an owner suffix).

    :param per_as: the 2.9/2.10 layout (one block per address space).
    """
    ranges = [ln for ln in lines if ln.startswith(RANGE_INDENT) and is_region_line(ln)]
    owners = bool(ranges) and all(has_owner_suffix(ln) for ln in ranges)
    r = Reader(lines, filename)
    views: list[FlatViewBlock] = []
    while not r.at_end():
        views.append(per_as_block(r, owners, len(views)) if per_as else flatview(r, owners))
    return views, owners


def flatview(r: Reader, owners: bool) -> FlatViewBlock:
    """``flatview := "FlatView #" INT EOL as-line+ root-line view-body blank``

    ``view-body := "  No rendered FlatView" EOL | range-line+ dispatch-line*``
    """
    lineno = r.lineno
    header = r.peek() or ""
    number = header[len(FLATVIEW_HEADER) :] if header.startswith(FLATVIEW_HEADER) else ""
    # Reliability fix (issue 6): ASCII digits, and few enough for int() ("²" is
    # isdigit(), and int() refuses more than 4300 digits).
    if not (number.isascii() and number.isdigit() and len(number) <= FLATVIEW_NUMBER_DIGITS):
        raise r.error(f"expected '{FLATVIEW_HEADER}N'")
    r.skip()
    block = FlatViewBlock(int(number), [], None, [], lineno=lineno)
    while r.check(AS_LINE_PREFIX):
        block.address_spaces.append(parse_as_line(r.take(), r.pos, r.filename))
    if not block.address_spaces:
        raise r.error(f"expected '{AS_LINE_PREFIX}NAME\", root: ROOT' after '{FLATVIEW_HEADER}N'")
    root = r.expect(ROOT_PREFIX, f"expected '{ROOT_PREFIX.strip()} NAME'")
    block.root = None if root == NO_ROOT else root
    if r.check_line(NO_FLATVIEW):
        r.skip()
    else:
        _range_lines(r, block.ranges, owners)
        if not block.ranges:
            raise r.error(f"expected range lines or '{NO_FLATVIEW.strip()}'")
        first = r.lineno
        while not r.at_end() and not r.check_line(""):
            if not r.check(DISPATCH_STARTS):
                raise r.error("expected a range line, the dispatch dump or a blank line")
            block.dispatch.append(r.take())
        if block.dispatch:
            block.dispatch_dump = parse_dispatch(block.dispatch, first, r.filename)
    r.expect_line("", "expected the blank line that ends a FlatView block")
    return block


def per_as_block(r: Reader, owners: bool, number: int) -> FlatViewBlock:
    """``per-as-block := "address-space (flat view): " NAME EOL
    ("  No rendered FlatView for address space '" NAME "'" EOL | range-line*) blank``

    QEMU 2.9/2.10: the block of one address space, numbered in order; its only `` AS``
    line has an empty root, and it has no root line.
    """
    lineno = r.lineno
    name = r.expect(FLAT_AS_HEADER, f"expected '{FLAT_AS_HEADER}NAME'")
    block = FlatViewBlock(number, [ASLine(name, "", None)], None, [], lineno=lineno)
    if r.check_line(NO_FLATVIEW_FOR.format(name)):
        r.skip()
    else:
        _range_lines(r, block.ranges, owners)
    r.expect_line("", "expected a range line or the blank line that ends the block")
    return block


def _range_lines(r: Reader, out: list[FlatRangeLine], owners: bool) -> None:
    """``range-line*``"""
    while r.check(RANGE_INDENT) and is_region_line(r.lines[r.pos]):
        out.append(parse_flat_range(r.take(), r.pos, owners=owners, filename=r.filename))
