"""Tree mode of ``info mtree``: the document grammar, and QEMU's printer.

:func:`parse_tree_document` checks the grammar and splits the text into blocks of
:class:`~qmirror.text.grammar.TreeLine` (``address-space:`` groups and
``memory-region:`` sections, in every dialect since QEMU 1.3); what the lines *mean*
as regions is :mod:`qmirror.rebuild.tree`.

Printing (:func:`print_tree`) is QEMU's ``mtree_info`` for tree mode, with its
grouping of address spaces by root, its queue of alias targets, the sort of
children by address then priority, and the orphaned children of hidden regions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qmirror.core.bulk import gc_paused
from qmirror.core.model import MASK64, AddressSpace, Machine, MemoryRegion, RegionKind
from qmirror.errors import ModelError, ParseError
from qmirror.text import dialect as dialects
from qmirror.text.dialect import Detection, Dialect
from qmirror.text.document import TreeBlock, read_tree
from qmirror.text.forgiving import PASTE_LIMIT, read_picked
from qmirror.text.grammar import (
    ACCESS_LETTERS,
    ALIASES_HEADER,
    AS_HEADER,
    MR_HEADER,
    OVERFLOW_MARKER,
    format_tree_line,
    last,
)
from qmirror.text.pastetree import Section
from qmirror.text.reader import split_lines
from qmirror.text.repair import Repair, Repaired, remap_error, repair


KIND_OF_WORD = {
    "ram": RegionKind.RAM,
    "rom": RegionKind.ROM,
    "romd": RegionKind.ROMD,
    "ramd": RegionKind.RAMD,
}


# -- documents -------------------------------------------------------------------


@dataclass(slots=True)
class TreeDocument:
    """A tree-mode text, split into blocks, with what its shape says about its flags."""

    blocks: list[TreeBlock]
    eol: str
    final_eol: bool
    #: Printed with ``-o``: every region line carries an owner suffix.
    owners: bool
    #: A ``[disabled]`` line was seen: printed with ``-D``.
    shows_disabled: bool
    filename: str | None = None
    #: The text's lines (without line endings), for error messages.
    lines: list[str] = field(default_factory=list, repr=False)
    #: The QEMU dialect the text is in, and why we think so.
    detection: Detection = field(default_factory=lambda: Detection(dialects.DEFAULT, ()))
    #: What ``lenient`` parsing repaired (pasting damage), with original line numbers.
    repairs: list[Repair] = field(default_factory=list)
    #: For a repaired text: the repair record, to map line numbers back.
    origin: Repaired | None = None
    #: For a text read by the forgiving reader (:mod:`qmirror.text.forgiving`): the
    #: section it came from, with its elisions and implied lines.
    paste: Section | None = None

    @property
    def partial(self) -> bool:
        """The text elides lines or lacks some the model needed (implied)."""
        return self.paste is not None and self.paste.partial

    def uncertain(self) -> tuple[list[str], bool]:
        """Where the text is partial: the address spaces whose blocks elide or imply
        lines, and whether a ``memory-region:`` block does (then any view may be)."""
        if self.paste is None:
            return [], False
        marks = [i + 1 for i, _ in self.paste.elisions] + [i + 1 for i in self.paste.implied]
        names: list[str] = []
        anywhere = False
        starts = [b.header_lineno for b in self.blocks]
        for lineno in marks:
            k = max((j for j, st in enumerate(starts) if st <= lineno), default=None)
            if k is None:
                anywhere = True
                continue
            b = self.blocks[k]
            if b.is_region_block:
                anywhere = True
            names += [n for n in b.names if n not in names]
        return names, anywhere

    def error(
        self, reason: str, lineno: int, find: str | None = None, *, column: int | None = None
    ) -> ParseError:
        """A ParseError at ``lineno``, at ``column`` if given, else where ``find`` occurs
        (else 1)."""
        source = self.lines[lineno - 1] if 0 < lineno <= len(self.lines) else ""
        if column is None:
            column = source.rfind(find) + 1 if find and find in source else 1
        return ParseError(
            reason, line=lineno, column=column, source_line=source, filename=self.filename
        )

    @property
    def dialect(self) -> Dialect:
        return self.detection.dialect


def parse_tree_document(
    text: str, *, filename: str | None = None, dialect: Dialect | None = None, lenient: bool = False
) -> TreeDocument:
    """Check ``text`` against the tree grammar and split it into blocks.

    :param dialect: the QEMU dialect the text is in (:mod:`qmirror.text.dialect`); found
        from the text's own evidence when ``None``.
    :param lenient: first repair pasting damage (:mod:`qmirror.text.repair`); the repairs are
        listed in :attr:`TreeDocument.repairs` and error lines refer to ``text``.
    :raise ParseError: with the line, column and reason of the first problem.
    """
    if lenient:
        if len(text) > PASTE_LIMIT:
            return parse_tree_document(text, filename=filename, dialect=dialect)
        try:  # intact QEMU output reads exactly as without `lenient`
            doc = parse_tree_document(text, filename=filename, dialect=dialect)
            if not _needs_forgiving(doc, text, text):
                return doc
        except ParseError:
            pass
        fixed = repair(text)
        try:
            doc = parse_tree_document(fixed.text, filename=filename, dialect=dialect)
        except ParseError as err:
            return forgiving_tree_document(
                text, filename=filename, dialect=dialect, error=remap_error(err, fixed, text)
            )
        if _needs_forgiving(doc, text, fixed.text):
            return forgiving_tree_document(text, filename=filename, dialect=dialect)
        doc.repairs = fixed.repairs
        doc.origin = fixed
        return doc
    with gc_paused():
        return _parse_tree(text, filename, dialect)


_RANGE_LIKE = re.compile(r"[0-9a-fA-F]{8,16}\\?-[0-9a-fA-F]{8,16} \(prio ")


def _needs_forgiving(doc: TreeDocument, text: str, fixed: str) -> bool:
    """Whether a text the strict grammar (after :func:`repair`) reads is still no
    complete QEMU output: empty; its repair lost range lines; a fragment that starts
    below an address space's root (QEMU never hides one); aliases whose targets have
    no block (the model could not be built)."""
    if not doc.blocks:
        return True
    if fixed is not text and len(_RANGE_LIKE.findall(fixed)) < len(_RANGE_LIKE.findall(text)):
        return True
    # Only for a repaired paste: QEMU without -D hides a disabled root, rarely.
    if fixed is not text and any(
        not b.is_region_block and b.lines and b.lines[0].level > 1 for b in doc.blocks
    ):
        return True
    have = {b.names[0] for b in doc.blocks if b.is_region_block}
    return any(
        ln.alias_target is not None and ln.alias_target not in have
        for b in doc.blocks
        for ln in b.lines
    )


def forgiving_tree_document(
    text: str,
    *,
    filename: str | None = None,
    dialect: Dialect | None = None,
    error: ParseError | None = None,
) -> TreeDocument:
    """Read the tree text of a paste with the forgiving reader (:mod:`qmirror.text.forgiving`).

    :param error: what the strict reading said, raised if the forgiving one fails too.
    :raise ParseError: no tree text in the paste, or one that still does not parse.
    """
    sec, fixed, doc = read_picked(
        text,
        "tree",
        lambda t: parse_tree_document(t, filename=filename, dialect=dialect),
        filename=filename,
        error=error,
    )
    doc.repairs = fixed.repairs
    doc.origin = fixed
    doc.paste = sec
    return doc


_LATE_MARKER = re.compile(r"^ +\[DETECTED OVERFLOW!\] ", re.MULTILINE)
_UNINDENTED_ROOT = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{16} ", re.MULTILINE)


def _parse_tree(text: str, filename: str | None, dialect: Dialect | None) -> TreeDocument:
    lines, eol, final_eol = split_lines(text, filename=filename)
    # Bare headers (QEMU 1.3–2.3) come with roots at indentation 0; anything else is
    # read as 2.4+ output, whose error messages fit malformed modern text best.
    prefixed = (
        dialect.prefixed_headers
        if dialect is not None
        else text.startswith((AS_HEADER, MR_HEADER))
        or "\n" + AS_HEADER in text
        or "\n" + MR_HEADER in text
        or _UNINDENTED_ROOT.search(text) is None
    )
    blocks, owners = read_tree(lines, filename, prefixed=prefixed, dialect=dialect)
    shows = hides = False
    for b in blocks:
        prev = 0
        for ln in b.lines:
            shows = shows or ln.disabled
            if ln.level > prev + 1:
                hides = True  # lines deeper than allowed: printed without -D
            prev = ln.level
    if dialect is not None:
        detection = Detection(dialect, ("given",))
    else:
        detection = dialects.decide_tree(_evidence(text, blocks, prefixed, hides))
    return TreeDocument(blocks, eol, final_eol, owners, shows, filename, lines, detection)


def _evidence(
    text: str, blocks: list[TreeBlock], prefixed: bool, hides: bool
) -> dialects.TreeEvidence:
    """What the parsed blocks show about the text's dialect."""
    letters = container = False
    alias_words: set[str] = set()
    io_aliases: list[str] = []
    for b in blocks:
        for ln in b.lines:
            word = ln.type_word
            if word in ACCESS_LETTERS:
                letters = True
            elif word == "container":
                container = True
            if ln.alias_target is not None:
                alias_words.add(word)
                if word == "i/o":
                    io_aliases.append(ln.alias_target)
    root_words = {
        b.names[0]: b.lines[0].type_word
        for b in blocks
        if b.is_region_block and b.lines and b.lines[0].level == 1
    }
    group_roots = [
        (b.lines[0].start, b.lines[0].tail)
        for b in blocks
        if not b.is_region_block and b.lines and b.lines[0].level == 1
    ]
    return dialects.TreeEvidence(
        prefixed_headers=prefixed,
        unindented_roots=not prefixed and bool(blocks),
        access_letters=letters,
        container_word=container,
        grouped_headers=any(len(b.names) > 1 for b in blocks if not b.is_region_block),
        # The substring test first: a multiline regex search tries every position.
        late_overflow_marker=(OVERFLOW_MARKER in text and _LATE_MARKER.search(text) is not None),
        target_words=bool(alias_words - {"i/o"}),
        io_alias_to_ram=any(
            root_words.get(t) in ("ram", "rom", "romd", "ramd") for t in io_aliases
        ),
        orphans=hides,
        repeated_roots=len(set(group_roots)) < len(group_roots),
    )


# -- printing ------------------------------------------------------------------------


def print_tree(
    machine: Machine,
    *,
    owners: bool = False,
    disabled: bool = False,
    eol: str = "\r\n",
    dialect: Dialect = dialects.DEFAULT,
) -> str:
    """Print ``machine`` as ``info mtree [-o] [-D]`` does in ``dialect`` (QEMU 7.2 by default).

    Since 7.0 address spaces that share a root share one block, in
    ``machine.tree_order`` when known (QEMU's hash order, kept from a parsed text) or
    else in the order of the first address space using each root; before 7.0 each
    address space has its own block, in creation order.

    :raise ModelError: owners asked for but unknown; ``-D`` asked for a model rebuilt
        from text that hid disabled regions; an alias loop.
    """
    out: list[str] = []
    blocks: list[tuple[MemoryRegion | None, list[AddressSpace]]]
    if dialect.grouped:
        groups: dict[MemoryRegion | None, list[AddressSpace]] = {}
        for a in machine.address_spaces:
            groups.setdefault(a.root, []).append(a)
        keys = list(groups)
        if machine.tree_order is not None:
            order = machine.tree_order
            keys = [k for k in order if k in groups] + [k for k in groups if k not in order]
        blocks = [(k, _header_order(groups[k])) for k in keys]
    else:
        blocks = [(a.root, [a]) for a in machine.address_spaces]
    queue: list[MemoryRegion] = []
    printer = _Printer(out, queue, owners, disabled, dialect)
    header = AS_HEADER if dialect.prefixed_headers else ""
    for root, ases in blocks:
        out.extend(header + a.name for a in ases)
        if root is not None:
            printer.print_region(root)
        printer.end_block()
    if not dialect.prefixed_headers:
        out.append(ALIASES_HEADER)
    header = MR_HEADER if dialect.prefixed_headers else ""
    i = 0
    while i < len(queue):
        mr = queue[i]
        out.append(header + mr.label)
        printer.print_region(mr)
        printer.end_block()
        i += 1
    return eol.join(out) + eol


def print_like(machine: Machine, document: TreeDocument) -> str:
    """Print ``machine`` the way ``document`` was printed: same flags, dialect, line ends."""
    text = print_tree(
        machine,
        owners=document.owners,
        disabled=document.shows_disabled,
        eol=document.eol,
        dialect=document.dialect,
    )
    return text if document.final_eol else text[: -len(document.eol)]


def _header_order(ases: list[AddressSpace]) -> list[AddressSpace]:
    """QEMU's group header order: by name (byte-wise), equal names newest first."""
    ordered: list[AddressSpace] = []
    for a in ases:  # creation order; insert like QEMU's sorted list insert
        pos = 0
        while pos < len(ordered) and ordered[pos].name.encode() < a.name.encode():
            pos += 1
        ordered.insert(pos, a)
    return ordered


#: The printer's path from a block root: (region, the rest of the path up).
_Path = tuple[MemoryRegion, "_Path"] | None
#: No real tree is this deep; past it, every as many levels, look for a cycle.
_DEEP = 4096


def _refuse_cycle(mr: MemoryRegion, up: _Path) -> None:
    while up is not None:
        if up[0] is mr:
            raise ModelError(
                f"cannot print {mr.label!r}: it is among its own subregions "
                "(a cycle of subregions; were the lists edited by hand?)"
            )
        up = up[1]


class _Printer:
    """QEMU's ``mtree_print_mr``, iterative so that deep trees cannot overflow the stack."""

    def __init__(
        self,
        out: list[str],
        queue: list[MemoryRegion],
        owners: bool,
        disabled: bool,
        dialect: Dialect,
    ) -> None:
        self.out = out
        self.queue = queue
        self.queued: set[MemoryRegion] = set()
        self.owners = owners
        self.dialect = dialect
        # Which disabled regions print: always (2.4–5.0), with -D (5.1+), never (1.3–2.3).
        self.show_disabled = dialect.disabled == "shown" or (
            dialect.disabled == "hidden" and disabled
        )
        self.pending_markers = 0
        #: Type words of aliases already printed (see type_field).
        self.alias_words: dict[MemoryRegion, str] = {}

    def end_block(self) -> None:
        """The blank line after a block; a hidden region's overflow marker sticks to it."""
        if self.dialect.blank_lines:
            self.out.append(OVERFLOW_MARKER * self.pending_markers)
            self.pending_markers = 0

    def type_field(self, mr: MemoryRegion) -> str:
        d = self.dialect
        if d.access_letters:
            readable = mr.romd_mode
            writable = not mr.readonly and not (mr.kind is RegionKind.ROMD and mr.romd_mode)
            return ("R" if readable else "-") + ("W" if writable else "-")
        if mr.alias is None:
            return mr.type_word(container_word=d.container_word)
        if not d.alias_target_word:
            return "i/o"
        # An alias prints its final target's word. Memoized along the chain, so that a
        # chain of n aliases costs O(n) to print, not O(n^2).
        words = self.alias_words
        chain: list[MemoryRegion] = []
        on_chain: set[MemoryRegion] = set()
        m: MemoryRegion = mr
        while m.alias is not None and m not in words:
            if m in on_chain:
                raise ModelError(f"alias loop through {m.label!r}")
            on_chain.add(m)
            chain.append(m)
            m = m.alias
        word = words[m] if m.alias is not None else m.type_word(container_word=d.container_word)
        for c in chain:
            words[c] = word
        return word

    def print_region(self, root: MemoryRegion) -> None:
        # Each entry carries its parent's path as a linked (region, up) pair, looked at
        # only past each multiple of _DEEP levels to catch a hand-made subregion cycle.
        stack: list[tuple[MemoryRegion, int, int, _Path]] = [(root, 1, 0, None)]
        out = self.out
        d = self.dialect
        while stack:
            mr, level, base, up = stack.pop()
            if level > _DEEP and level % _DEEP == 1:
                _refuse_cycle(mr, up)
            if not mr.enabled and d.disabled == "skipped":
                continue  # 1.3–2.3: a disabled region and its subtree are not visited
            start = (base + mr.addr) & MASK64
            end = (start + last(mr.size)) & MASK64
            markers = 1 if (start < base or end < start) else 0
            markers += mr.hidden_overflow_markers
            if mr.alias is not None and mr.alias not in self.queued:
                self.queued.add(mr.alias)
                self.queue.append(mr.alias)
            if mr.synthetic and self.show_disabled:
                raise ModelError(
                    "cannot print disabled regions: this model was rebuilt from text that "
                    "hid them (printed without -D), so they are not known"
                )
            if mr.enabled or self.show_disabled:
                if mr.ownership is None and self.owners:
                    raise ModelError(
                        f"cannot print owners (-o): region {mr.label!r} has no owner "
                        "information (the text it came from was printed without -o)"
                    )
                line = format_tree_line(
                    level=level,
                    start=start,
                    end=end,
                    priority=mr.priority,
                    nonvolatile=mr.nonvolatile,
                    type_word=self.type_field(mr),
                    name=mr.label,
                    alias_target=None if mr.alias is None else mr.alias.label,
                    alias_start=mr.alias_offset & MASK64,
                    alias_end=(mr.alias_offset + last(mr.size)) & MASK64,
                    disabled=not mr.enabled,
                    ownership=mr.ownership if self.owners else None,
                    root_level=d.root_level,
                )
                markers += self.pending_markers
                self.pending_markers = 0
                if markers and not d.overflow_before_indent:
                    body = line.lstrip(" ")
                    line = line[: len(line) - len(body)] + OVERFLOW_MARKER * markers + body
                elif markers:
                    line = OVERFLOW_MARKER * markers + line
                out.append(line)
            else:
                self.pending_markers += markers
            if mr.subregions:
                kids = sorted(mr.subregions, key=lambda c: (c.addr & MASK64, -c.priority))
                here = (mr, up)
                for kid in reversed(kids):
                    stack.append((kid, level + 1, start, here))
