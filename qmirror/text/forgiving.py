"""The forgiving reader: ``info mtree`` text as people paste it, read as far as it goes.

:func:`read_paste` takes a paste apart into *sections* — runs of tree text
(``info mtree``) and of flat text (``info mtree -f``) — and writes each one out in
QEMU's exact grammar, so that the strict parsers (:mod:`qmirror.text.tree`,
:mod:`qmirror.text.flat`) read it and everything downstream works on fragments too.
What it had to assume is recorded, never hidden (the sections and the tree writer are
:mod:`qmirror.text.pastetree`):

* **repairs** (:class:`~qmirror.text.repair.Repair`, with the original line): the
  line-level ones of :mod:`qmirror.text.pastelines`, and dropped prose and prompts,
  re-joined wrapped lines, blank lines added or dropped, indentation re-read;
* **elisions** (``...``, ``…``, ``[...]``, ``<snip>``, ``... skipped 30 virtio-mmio``):
  kept as :class:`Elision` markers at their place in the section and printed again by
  :func:`reprint` — a document with one is *partial*;
* **implied lines**: a header, `` AS`` line, root line or root region the fragment
  lacks, written in so that the text parses, and marked (:attr:`Section.implied`).

Grammar of a section, over the tokens of :mod:`qmirror.text.pastelines`::

    paste      = (section | junk | blank)*
    section    = tree | flat                    (a new section where the output restarts)
    tree       = tree-block+
    tree-block = [tree-head+] (region | elision)+        (head implied when missing)
    flat       = view+
    view       = [flat-head] as-line* [root-line] (no-view | region | elision)*

Tree levels come from the indentation, whatever its step (QEMU's 2, a mailer's 3, tabs)
and offset: the most common step between a line and a deeper next one, counted from
the block's shallowest line; where the lines are not multiples of it, from nesting.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from qmirror.errors import ParseError
from qmirror.text.grammar import (
    AS_HEADER,
    FLAT_AS_HEADER,
    FLATVIEW_HEADER,
    MR_HEADER,
    NO_FLATVIEW,
    ROOT_PREFIX,
)
from qmirror.text.pastelines import (
    AS_LINE,
    BLANK,
    ELISION,
    FLAT_HEAD,
    IMPLIED_MARK,
    JUNK,
    NO_VIEW,
    REGION,
    ROOT_LINE,
    TREE_HEAD,
    Token,
    classify,
    continues,
    is_diff,
    tokenize,
)
from qmirror.text.pastetree import Block, Elision, Section, TreeWriter, as_for_root
from qmirror.text.repair import Repair, Repaired, remap_error


_Doc = TypeVar("_Doc")


#: Pastes are small; past this many characters a text is read strictly only (intact
#: QEMU output of any size still reads), so that no damaged giant costs minutes.
PASTE_LIMIT = 8 << 20


@dataclass(slots=True)
class Paste:
    """What :func:`read_paste` found: sections, repairs, the text's line ending."""

    sections: list[Section]
    repairs: list[Repair]
    eol: str
    #: Lines of the original that look like region or range lines (for statistics).
    source_ranges: int = 0

    def pick(self, kind: str) -> Section | None:
        """The section of ``kind`` with the most range lines (the last on a tie)."""
        best: Section | None = None
        for s in self.sections:
            if s.kind == kind and (best is None or s.ranges >= best.ranges):
                best = s
        return best


# -- reading ---------------------------------------------------------------------------

_PROMPT = re.compile(r"(?:\(qemu\)|\(gdb\)|[$#%]|\S*[@:][^ ]*[$#])(?:\s|\Z)", re.IGNORECASE)
# Anchored at the end, no `.*`: a line of repeated `): ` must not cost quadratic time.
_OFFSET_OR_ACCEL = re.compile(
    r" @[0-9a-f]{16}(?: (?:KVM|kvm)(?::\w+)?)*\Z"
    r"| (?:KVM|kvm)(?::\w+)?\Z"
)
_ALIAS_WINDOW = re.compile(r" [0-9a-f]{16}-[0-9a-f]{16}(?: \[disabled\])?\Z")
_BARE_NAME = re.compile(r"[\w./ -]{1,40}")
_HEAD_OF_RANGE = re.compile(r"[0-9a-fA-F]{8,16}-[0-9a-fA-F]{8,16}(?: \(prio(?: -?\d+,?)?)?\Z")
_RANGE_START = re.compile(r"[0-9a-fA-F]{8,16}-[0-9a-fA-F]{8,16} \(prio")


def read_paste(text: str) -> Paste:
    """Find the tree and flat texts in a paste; see the module docstring.

    Never raises: a paste with nothing to read has no sections. The result is shared
    between calls on the same text (the tree and flat readers both ask): do not
    change it.
    """
    return _read_paste(text)


@functools.lru_cache(maxsize=4)
def _read_paste(text: str) -> Paste:
    if len(text) > PASTE_LIMIT:
        return Paste(
            [],
            [Repair(1, f"{len(text)} characters: too large for a paste, not read forgivingly")],
            "\n",
        )
    tokens, repairs, eol = tokenize(text)
    sections = _sections(tokens, repairs)
    source_ranges = sum(1 for t in tokens if t.kind == REGION)
    if is_diff(text):
        # A unified diff shows two texts: the old side is a section of its own, read
        # first, so that the new side is the one commands pick on a tie.
        old_tokens, _, _ = tokenize(text, side="old")
        old = _sections(old_tokens, [])
        if old:
            repairs.append(
                Repair(
                    old[0].span[0],
                    "diff: the old side read as a text of its own, the new side as another",
                )
            )
        sections = old + sections
        lines = text.split("\n")  # once: a paste can be megabytes long
        source_ranges += sum(
            1 for t in old_tokens if t.kind == REGION and lines[t.line - 1].startswith("-")
        )
    repairs.sort(key=lambda r: r.line)
    return Paste(sections, repairs, eol, source_ranges)


def _sections(tokens: list[Token], repairs: list[Repair]) -> list[Section]:
    tokens = _join_wrapped(tokens, repairs)
    prefixed = any(t.kind == TREE_HEAD for t in tokens)
    flat_heads = any(t.kind in (FLAT_HEAD, AS_LINE, ROOT_LINE) for t in tokens)
    return _Assembler(tokens, repairs, bare_headers=not prefixed and not flat_heads).run()


def reprint_paste(text: str) -> str:
    """Every tree and flat text of a paste, re-printed as read (elisions kept), one
    after the other: what a paste keeps of its range lines."""
    return "".join(t for _, t in each_text(text))


def each_text(text: str) -> list[tuple[str, str]]:
    """Every tree and flat text of a paste on its own, as ``(kind, text)``: re-printed
    as read (elisions kept), for the readers, which take one text each (two VMs'
    trees, a tree and its ``-f``, both sides of a diff)."""
    paste = read_paste(text)
    return [(s.kind, reprint(s, paste.eol)) for s in paste.sections]


def _join_wrapped(tokens: list[Token], repairs: list[Repair]) -> list[Token]:
    out: list[Token] = []
    for t in tokens:
        if out:
            joined = continues(out[-1], t)
            if joined is not None:
                repairs.append(Repair(t.line, "wrapped line joined to the line before"))
                out[-1].text = joined
                continue
            prev = out[-1]
            if (
                prev.kind == JUNK
                and t.kind == JUNK
                and len(prev.raw) < 1000
                and _HEAD_OF_RANGE.search(prev.raw.rstrip())
            ):
                # Wrapped inside the range head (`... (prio 0,` / `i/o): name`).
                whole = classify(prev.raw.rstrip() + " " + t.text.lstrip(), prev.line)
                if whole.kind == REGION:
                    repairs.append(Repair(t.line, "wrapped line joined to the line before"))
                    out[-1] = whole
                    continue
        out.append(t)
    return out


class _Assembler:
    """Owns the position in the token list; builds sections."""

    def __init__(self, tokens: list[Token], repairs: list[Repair], *, bare_headers: bool) -> None:
        self.toks = tokens
        self.repairs = repairs
        self.bare = bare_headers
        self.i = 0
        self.sections: list[Section] = []

    def note(self, line: int, what: str) -> None:
        self.repairs.append(Repair(line, what))

    def run(self) -> list[Section]:
        pending: list[Elision] = []
        while self.i < len(self.toks):
            t = self.toks[self.i]
            if t.kind in (TREE_HEAD, REGION) or (t.kind == JUNK and self._bare_head(self.i)):
                if t.kind == REGION and self._looks_flat(self.i):
                    self._flat(pending)
                else:
                    self._tree(pending)
                pending = []
            elif t.kind in (FLAT_HEAD, AS_LINE, ROOT_LINE, NO_VIEW):
                self._flat(pending)
                pending = []
            elif t.kind == ELISION:
                self._elided(t)
                pending.append(Elision(t.line, t.text))
                self.i += 1
            else:
                self._drop(t)
                self.i += 1
        # Headers alone say nothing about memory: a section needs a range line.
        return [s for s in self.sections if s.ranges]

    def _elided(self, t: Token) -> None:
        self.note(
            t.line,
            "elision kept as a marker (the text is partial)"
            + (f": {t.text[:40]!r}" if t.text else ""),
        )

    def _drop(self, t: Token) -> None:
        if t.kind == JUNK:
            # Bounded: a prompt is short, and the regex must not meet 200 kB of junk.
            what = (
                "monitor or shell prompt dropped"
                if _PROMPT.match(t.text[:200])
                else "malformed region line dropped"
                if _RANGE_START.search(t.text)
                else "text that is not `info mtree` output dropped"
            )
            self.note(t.line, f"{what}: {t.text[:40]!r}")

    def _bare_head(self, i: int) -> bool:
        """A bare address-space name (QEMU before 2.4) right above a region line."""
        if not self.bare or i + 1 >= len(self.toks):
            return False
        t, nxt = self.toks[i], self.toks[i + 1]
        return (
            t.kind == JUNK
            and nxt.kind == REGION
            and len(t.text) <= 40
            and _BARE_NAME.fullmatch(t.text) is not None
            and not _PROMPT.match(t.text)
        )

    def _looks_flat(self, i: int) -> bool:
        """A run of range lines with no header: flat when offsets or accelerator words
        show, or all lines share one indentation and no alias window shows."""
        run: list[Token] = []
        j = i
        while (
            j < len(self.toks)
            and self.toks[j].kind in (REGION, ELISION, BLANK)
            and len(run) < 200
            and j - i < 400
        ):
            if self.toks[j].kind == REGION:
                run.append(self.toks[j])
            j += 1
        if any(_OFFSET_OR_ACCEL.search(t.text) for t in run):
            return True
        if any(
            "): alias " in t.text and " @" in t.text and _ALIAS_WINDOW.search(t.text) for t in run
        ):
            return False
        return len(run) > 1 and len({t.indent for t in run}) == 1

    # -- tree ----------------------------------------------------------------------------

    def _tree(self, pending: list[Elision]) -> None:
        blocks: list[Block] = []
        block: Block | None = None
        seen_region_block = False
        elided: list[Elision] = list(pending)
        blank_before = False
        block_min = 0  # the smallest indentation in the block so far
        while self.i < len(self.toks):
            t = self.toks[self.i]
            k = t.kind
            if k in (FLAT_HEAD, AS_LINE, ROOT_LINE, NO_VIEW):
                break
            if k == TREE_HEAD or (k == JUNK and self._bare_head(self.i)):
                is_mr = t.kind == TREE_HEAD and t.text.startswith(MR_HEADER)
                # The output starts again: an address space after `memory-region:`
                # blocks, or the first header again once lines followed it.
                first = blocks[0].heads[0].text if blocks and blocks[0].heads else None
                if (
                    not is_mr
                    and blocks
                    and (seen_region_block or (t.text == first and any(b.regions for b in blocks)))
                ):
                    self.note(t.line, "the output starts again here: read as another text")
                    break
                self._head_name(t)
                if is_mr or t.kind == JUNK:
                    seen_region_block = seen_region_block or is_mr
                if (
                    block is not None
                    and not block.regions
                    and not is_mr
                    and not block.region_block
                    and not blank_before
                ):
                    block.heads.append(t)
                else:
                    if block is not None and not blank_before and block.regions:
                        self.note(t.line, "missing blank line before this header added")
                    block = Block([t], region_block=is_mr)
                    blocks.append(block)
                block.elisions += [(len(block.regions), e) for e in elided]
                elided = []
                blank_before = False
            elif k == REGION:
                if block is None or (blank_before and block.regions and t.indent <= block_min):
                    if block is not None and self._looks_flat(self.i):
                        break
                    block = Block([])
                    blocks.append(block)
                elif blank_before and block.regions:
                    self.note(self.toks[self.i - 1].line, "extra blank line inside a block dropped")
                block.elisions += [(len(block.regions), e) for e in elided]
                elided = []
                block_min = min(block_min, t.indent) if block.regions else t.indent
                block.regions.append(t)
                blank_before = False
            elif k == ELISION:
                self._elided(t)
                elided.append(Elision(t.line, t.text))
            elif k == BLANK:
                blank_before = True
            else:
                self._drop(t)
            self.i += 1
        if block is not None:
            block.elisions += [(len(block.regions), e) for e in elided]
        self.sections.append(TreeWriter(blocks, self.note).write())

    def _head_name(self, t: Token) -> tuple[str, bool]:
        if t.kind == JUNK:
            self.note(t.line, f"bare header of QEMU before 2.4 read as 'address-space: {t.text}'")
            return t.text, False
        if t.text.startswith(MR_HEADER):
            return t.text[len(MR_HEADER) :], True
        return t.text[len(AS_HEADER) :], False

    # -- flat ----------------------------------------------------------------------------

    def _flat(self, pending: list[Elision]) -> None:
        sec = Section("flat")
        per_as = any(
            t.kind == FLAT_HEAD and t.text.startswith(FLAT_AS_HEADER)
            for t in self.toks[self.i : self.i + 50]
        )
        numbers: set[int] = set()
        view_open = False
        have_as = have_root = False
        root_guess: str | None = None
        ranges_in_view = 0
        elided = list(pending)

        def close(line: int) -> None:
            nonlocal view_open
            if view_open:
                if not ranges_in_view and not per_as and not sec.lines[-1].startswith(NO_FLATVIEW):
                    sec.add(NO_FLATVIEW, line, implied=True)
                sec.add("", line)
            view_open = False

        def open_view(
            line: int, number: int | None, name: str | None = None, *, implied: bool = False
        ) -> None:
            nonlocal view_open, have_as, have_root, ranges_in_view, root_guess
            close(line)
            if per_as:
                sec.add(FLAT_AS_HEADER + (name or "memory"), line, implied=name is None or implied)
                have_as = have_root = True
            else:
                n = number if number is not None else (max(numbers) + 1 if numbers else 0)
                numbers.add(n)
                sec.add(f"{FLATVIEW_HEADER}{n}", line, implied=number is None or implied)
                have_as = have_root = False
            view_open = True
            ranges_in_view = 0
            root_guess = None

        def need_as_and_root(line: int) -> None:
            nonlocal have_as, have_root
            if not have_as:
                root = root_guess or "system"
                sec.add(f' AS "{as_for_root(root)}", root: {root}', line, implied=True)
                self.note(line, "missing ' AS' line implied")
                have_as = True
            if not have_root:
                sec.add(ROOT_PREFIX + (root_guess or "system"), line, implied=True)
                self.note(line, "missing 'Root memory region:' line implied")
                have_root = True

        while self.i < len(self.toks):
            t = self.toks[self.i]
            k = t.kind
            if k == TREE_HEAD:
                break
            if k == FLAT_HEAD:
                if t.text.startswith(FLATVIEW_HEADER):
                    n = int(t.text[len(FLATVIEW_HEADER) :])
                    if n in numbers:
                        self.note(t.line, "the output starts again here: read as another text")
                        break
                    open_view(t.line, n, implied=t.implied)
                else:
                    open_view(t.line, None, t.text.split(": ", 1)[1], implied=t.implied)
            elif k == AS_LINE:
                if not view_open or have_root or ranges_in_view:
                    self.note(t.line, "missing 'FlatView #N' header implied")
                    open_view(t.line, None)
                sec.add(" " + t.text, t.line, implied=t.implied)
                have_as = True
                root_guess = root_guess or t.text.split(", root: ", 1)[1].split(", alias ")[0]
            elif k == ROOT_LINE:
                if not view_open or have_root or ranges_in_view:
                    self.note(t.line, "missing 'FlatView #N' header implied")
                    open_view(t.line, None)
                root_guess = t.text[len(ROOT_PREFIX.lstrip()) :] or "system"
                if not have_as:
                    have_root = True  # only the AS line is missing
                    need_as_and_root(t.line)
                sec.add(" " + t.text, t.line, implied=t.implied)
                have_root = True
            elif k == NO_VIEW:
                if not view_open:
                    open_view(t.line, None)
                need_as_and_root(t.line)
                if per_as:
                    name = sec.lines[-1].split(": ", 1)[1] if sec.lines else "memory"
                    sec.add(f"{NO_FLATVIEW} for address space '{name}'", t.line)
                else:
                    sec.add(NO_FLATVIEW, t.line, implied=t.implied)
            elif k == REGION:
                if not view_open:
                    self.note(t.line, "missing 'FlatView #N' header implied")
                    open_view(t.line, None)
                need_as_and_root(t.line)
                for e in elided:
                    sec.elide(Elision(e.line, e.words, 2))
                elided = []
                sec.add("  " + t.text, t.line, implied=t.implied)
                sec.ranges += 1
                ranges_in_view += 1
            elif k == ELISION:
                self._elided(t)
                elided.append(Elision(t.line, t.text, 2))
            elif k == BLANK:
                if view_open and (ranges_in_view or have_root):
                    close(t.line)
            else:
                self._drop(t)
            self.i += 1
        end = self.toks[self.i - 1].line if self.i else 1
        for e in elided:
            sec.elide(e)
        if view_open:
            if not sec.lines or sec.lines[-1] != "":
                self.note(end, "missing blank line at the end added")
            close(end)
        self.sections.append(sec)


def reprint(sec: Section, eol: str = "\n") -> str:
    """The section as read, with its elision markers where they were, and the lines
    the paste lacked marked as implied (:data:`~qmirror.text.pastelines.IMPLIED_MARK`
    before them: the reader takes them back as implied)."""
    out: list[str] = []
    at = dict[int, list[Elision]]()
    for i, e in sec.elisions:
        at.setdefault(i, []).append(e)
    for i, ln in enumerate(sec.lines):
        out.extend(e.marker() for e in at.pop(i, []))
        if i in sec.implied and ln:
            ln = IMPLIED_MARK + ("" if ln.startswith(" ") else " ") + ln
        out.append(ln)
    for rest in at.values():
        out.extend(e.marker() for e in rest)
    return eol.join(out) + eol if out else ""


def refuse(text: str, kind: str, paste: Paste, filename: str | None = None) -> ParseError:
    """The error for a paste with no ``kind`` text in it."""
    first = next((i for i, ln in enumerate(text.split("\n"), 1) if ln.strip()), 1)
    other = "`info mtree -f`" if kind == "tree" else "`info mtree` (tree)"
    what = "tree text (`info mtree`)" if kind == "tree" else "flat text (`info mtree -f`)"
    reason = f"no {what} found"
    if any(s.kind != kind for s in paste.sections):
        reason += f": this is {other} output"
    elif len(text) > PASTE_LIMIT:
        reason += f": a text over {PASTE_LIMIT >> 20} MiB is read strictly only"
    elif "Physical sections" in text[:PASTE_LIMIT]:
        reason += ": only a `-d` dispatch dump, without the range lines of its FlatView"
    elif not paste.sections:
        reason += ": no region or range line anywhere"
    src = text.split("\n")[first - 1].rstrip("\r") if text else ""
    return ParseError(reason, line=first, column=1, source_line=src, filename=filename)


def pick_text(
    text: str, kind: str, *, filename: str | None = None, error: ParseError | None = None
) -> tuple[Section, Repaired]:
    """The ``kind`` text (``"tree"`` or ``"flat"``) of a paste, rewritten in QEMU's
    grammar, with what was repaired: the one way both strict parsers take a paste.

    :param error: what the strict reading said, raised when the paste holds no such
        text and nothing else either (its message is then the more precise).
    :raise ParseError: no ``kind`` text in the paste.
    """
    paste = read_paste(text)
    sec = paste.pick(kind)
    if sec is None:
        if error is not None and not paste.sections and "Physical sections" not in text:
            raise error
        raise refuse(text, kind, paste, filename)
    fixed = Repaired(sec.text(), list(paste.repairs), list(sec.origin))
    others = [s.span for s in paste.sections if s.kind == kind and s is not sec]
    if others:
        fixed.repairs.append(
            Repair(
                sec.span[0],
                f"the paste holds {len(others) + 1} {kind} texts: "
                f"lines {sec.span[0]}–{sec.span[1]} read (the longest)",
            )
        )
    return sec, fixed


def read_picked(
    text: str,
    kind: str,
    parse: Callable[[str], _Doc],
    *,
    filename: str | None = None,
    error: ParseError | None = None,
) -> tuple[Section, Repaired, _Doc]:
    """:func:`pick_text`, then ``parse`` on the rewritten text: a parse error is
    given the paste's own line numbers (or, with ``error``, the strict reading's error
    is raised instead: it is the more precise)."""
    sec, fixed = pick_text(text, kind, filename=filename, error=error)
    try:
        doc = parse(fixed.text)
    except ParseError as err:
        if error is not None:
            raise error from None
        raise remap_error(err, fixed, text) from None
    return sec, fixed, doc
