"""The forgiving reader: ``info mtree`` text as people paste it, read as far as it goes.

:func:`read_paste` takes a paste apart into *sections* — runs of tree text
(``info mtree``) and of flat text (``info mtree -f``) — and writes each one out in
QEMU's exact grammar, so that the strict parsers (:mod:`qmirror.text.tree`,
:mod:`qmirror.text.flat`) read it and everything downstream works on fragments too.
What it had to assume is recorded, never hidden:

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
import itertools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from qmirror.errors import ParseError
from qmirror.text.grammar import (
    AS_HEADER,
    FLAT_AS_HEADER,
    FLATVIEW_HEADER,
    MR_HEADER,
    NO_FLATVIEW,
    ROOT_PREFIX,
    TreeLine,
    has_owner_suffix,
    hex16,
    parse_tree_line,
)
from qmirror.text.pastelines import (
    AS_LINE,
    BLANK,
    ELISION,
    FLAT_HEAD,
    JUNK,
    NO_VIEW,
    REGION,
    ROOT_LINE,
    TREE_HEAD,
    Token,
    continues,
    is_diff,
    tokenize,
)
from qmirror.text.repair import Repair


#: Pastes are small; past this many characters a text is read strictly only (intact
#: QEMU output of any size still reads), so that no damaged giant costs minutes.
PASTE_LIMIT = 8 << 20


@dataclass(frozen=True, slots=True)
class Elision:
    """Lines the author left out, where they were."""

    line: int  #: original line
    words: str  #: what the marker said besides the dots (``skipped 30 virtio-mmio``)
    indent: int = 0  #: columns of indentation to print it with

    def marker(self) -> str:
        return " " * self.indent + "..." + (f" {self.words}" if self.words else "")


@dataclass(slots=True)
class Section:
    """A tree or flat text found in a paste, in QEMU's grammar.

    :param lines: the section as QEMU would print it (no line endings).
    :param origin: the original line of each of ``lines``.
    :param elisions: ``(i, elision)``: the elision comes before ``lines[i]``.
    :param implied: indexes of ``lines`` that the paste did not have.
    """

    kind: str
    lines: list[str] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)
    elisions: list[tuple[int, Elision]] = field(default_factory=list)
    implied: set[int] = field(default_factory=set)
    ranges: int = 0

    def add(self, text: str, line: int, *, implied: bool = False) -> None:
        if implied:
            self.implied.add(len(self.lines))
        self.lines.append(text)
        self.origin.append(line)

    def elide(self, e: Elision) -> None:
        self.elisions.append((len(self.lines), e))

    @property
    def span(self) -> tuple[int, int]:
        return (min(self.origin), max(self.origin)) if self.origin else (0, 0)

    @property
    def partial(self) -> bool:
        return bool(self.elisions or self.implied)

    def text(self, eol: str = "\n") -> str:
        return eol.join(self.lines) + eol if self.lines else ""


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
_OFFSET_OR_ACCEL = re.compile(r"\): .* @[0-9a-f]{16}(?: |\Z)|\): .* (?:KVM|kvm)(?::\w+)?\Z")
_ALIAS_LINE = re.compile(r"\): alias .* @.* [0-9a-f]{16}-[0-9a-f]{16}")
_BARE_NAME = re.compile(r"[\w./ -]{1,40}")
_RANGE_START = re.compile(r"[0-9a-fA-F]{8,16}-[0-9a-fA-F]{8,16} \(prio")
_SIZE = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16}) \(prio (-?\d+), ([^()]+)\): ?(.*)\Z")


def read_paste(text: str) -> Paste:
    """Find the tree and flat texts in a paste; see the module docstring.

    Never raises: a paste with nothing to read has no sections. The result is shared
    between calls on the same text (the tree and flat readers both ask): do not
    change it.
    """
    return _read_paste(text)


@functools.lru_cache(maxsize=4)
def _read_paste(text: str) -> Paste:
    tokens, repairs, eol = tokenize(text)
    sections = _sections(tokens, repairs)
    source_ranges = sum(1 for t in tokens if t.kind == REGION)
    if is_diff(text):
        # A unified diff shows two texts: the old side is a section of its own, read
        # first, so that the new side is the one commands pick on a tie.
        old_tokens, _, _ = tokenize(text, side="old")
        old = _sections(old_tokens, [])
        if old:
            repairs.append(Repair(old[0].span[0], "diff: the old side read as a text of "
                                                  "its own, the new side as another"))
        sections = old + sections
        source_ranges += sum(1 for t in old_tokens if t.kind == REGION
                             and text.split("\n")[t.line - 1].startswith("-"))
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
    paste = read_paste(text)
    return "".join(reprint(s, paste.eol) for s in paste.sections)


def _join_wrapped(tokens: list[Token], repairs: list[Repair]) -> list[Token]:
    out: list[Token] = []
    for t in tokens:
        if out:
            joined = continues(out[-1], t)
            if joined is not None:
                repairs.append(Repair(t.line, "wrapped line joined to the line before"))
                out[-1].text = joined
                continue
        out.append(t)
    return out


@dataclass(slots=True)
class _Block:
    heads: list[Token]
    regions: list[Token] = field(default_factory=list)
    #: (index in regions before which, elision)
    elisions: list[tuple[int, Elision]] = field(default_factory=list)
    region_block: bool = False


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
                pending.append(Elision(t.line, t.text))
                self.i += 1
            else:
                self._drop(t)
                self.i += 1
        # Headers alone say nothing about memory: a section needs a range line.
        return [s for s in self.sections if s.ranges]

    def _drop(self, t: Token) -> None:
        if t.kind == JUNK:
            # Bounded: a prompt is short, and the regex must not meet 200 kB of junk.
            what = ("monitor or shell prompt dropped" if _PROMPT.match(t.text[:200])
                    else "malformed region line dropped" if _RANGE_START.search(t.text)
                    else "text that is not `info mtree` output dropped")
            self.note(t.line, f"{what}: {t.text[:40]!r}")

    def _bare_head(self, i: int) -> bool:
        """A bare address-space name (QEMU before 2.4) right above a region line."""
        if not self.bare or i + 1 >= len(self.toks):
            return False
        t, nxt = self.toks[i], self.toks[i + 1]
        return (t.kind == JUNK and nxt.kind == REGION and len(t.text) <= 40
                and _BARE_NAME.fullmatch(t.text) is not None and not _PROMPT.match(t.text))

    def _looks_flat(self, i: int) -> bool:
        """A run of range lines with no header: flat when offsets or accelerator words
        show, or all lines share one indentation and no alias window shows."""
        run: list[Token] = []
        j = i
        while j < len(self.toks) and self.toks[j].kind in (REGION, ELISION, BLANK) \
                and len(run) < 200 and j - i < 400:
            if self.toks[j].kind == REGION:
                run.append(self.toks[j])
            j += 1
        if any(_OFFSET_OR_ACCEL.search(t.text) for t in run):
            return True
        if any(_ALIAS_LINE.search(t.text) for t in run):
            return False
        return len(run) > 1 and len({t.indent for t in run}) == 1

    # -- tree ----------------------------------------------------------------------------

    def _tree(self, pending: list[Elision]) -> None:
        blocks: list[_Block] = []
        block: _Block | None = None
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
                if not is_mr and seen_region_block and blocks:
                    self.note(t.line, "the output starts again here: read as another text")
                    break
                self._head_name(t)
                if is_mr or t.kind == JUNK:
                    seen_region_block = seen_region_block or is_mr
                if block is not None and not block.regions and not is_mr \
                        and not block.region_block and not blank_before:
                    block.heads.append(t)
                else:
                    if block is not None and not blank_before and block.regions:
                        self.note(t.line, "missing blank line before this header added")
                    block = _Block([t], region_block=is_mr)
                    blocks.append(block)
                block.elisions += [(len(block.regions), e) for e in elided]
                elided = []
                blank_before = False
            elif k == REGION:
                if block is None or (blank_before and block.regions
                                     and t.indent <= block_min):
                    if block is not None and self._looks_flat(self.i):
                        break
                    block = _Block([])
                    blocks.append(block)
                elif blank_before and block.regions:
                    self.note(self.toks[self.i - 1].line, "extra blank line inside a block dropped")
                block.elisions += [(len(block.regions), e) for e in elided]
                elided = []
                block_min = min(block_min, t.indent) if block.regions else t.indent
                block.regions.append(t)
                blank_before = False
            elif k == ELISION:
                elided.append(Elision(t.line, t.text))
            elif k == BLANK:
                blank_before = True
            else:
                self._drop(t)
            self.i += 1
        if block is not None:
            block.elisions += [(len(block.regions), e) for e in elided]
        self.sections.append(_TreeWriter(blocks, self.note).write())

    def _head_name(self, t: Token) -> tuple[str, bool]:
        if t.kind == JUNK:
            self.note(t.line, f"bare header of QEMU before 2.4 read as 'address-space: {t.text}'")
            return t.text, False
        if t.text.startswith(MR_HEADER):
            return t.text[15:], True
        return t.text[15:], False

    # -- flat ----------------------------------------------------------------------------

    def _flat(self, pending: list[Elision]) -> None:
        sec = Section("flat")
        per_as = any(t.kind == FLAT_HEAD and t.text.startswith(FLAT_AS_HEADER)
                     for t in self.toks[self.i:self.i + 50])
        numbers: set[int] = set()
        view_open = False
        have_as = have_root = False
        root_guess: str | None = None
        ranges_in_view = 0
        elided = list(pending)

        def close(line: int) -> None:
            nonlocal view_open
            if view_open:
                if not ranges_in_view and not per_as and not sec.lines[-1].startswith(
                        NO_FLATVIEW):
                    sec.add(NO_FLATVIEW, line, implied=True)
                sec.add("", line)
            view_open = False

        def open_view(line: int, number: int | None, name: str | None = None) -> None:
            nonlocal view_open, have_as, have_root, ranges_in_view, root_guess
            close(line)
            if per_as:
                sec.add(FLAT_AS_HEADER + (name or "memory"), line,
                        implied=name is None)
                have_as = have_root = True
            else:
                n = number if number is not None else (max(numbers) + 1 if numbers else 0)
                numbers.add(n)
                sec.add(f"{FLATVIEW_HEADER}{n}", line, implied=number is None)
                have_as = have_root = False
            view_open = True
            ranges_in_view = 0
            root_guess = None

        def need_as_and_root(line: int) -> None:
            nonlocal have_as, have_root
            if not have_as:
                root = root_guess or "system"
                sec.add(f' AS "{_as_for_root(root)}", root: {root}', line, implied=True)
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
                    n = int(t.text[10:])
                    if n in numbers:
                        self.note(t.line, "the output starts again here: read as another text")
                        break
                    open_view(t.line, n)
                else:
                    open_view(t.line, None, t.text.split(": ", 1)[1])
                    sec.implied.discard(len(sec.lines) - 1)
            elif k == AS_LINE:
                if not view_open or have_root or ranges_in_view:
                    self.note(t.line, "missing 'FlatView #N' header implied")
                    open_view(t.line, None)
                sec.add(" " + t.text, t.line)
                have_as = True
                root_guess = root_guess or t.text.split(", root: ", 1)[1].split(", alias ")[0]
            elif k == ROOT_LINE:
                if not view_open or have_root or ranges_in_view:
                    self.note(t.line, "missing 'FlatView #N' header implied")
                    open_view(t.line, None)
                root_guess = t.text[len("Root memory region: "):] or "system"
                if not have_as:
                    have_root = True  # only the AS line is missing
                    need_as_and_root(t.line)
                sec.add(" " + t.text, t.line)
                have_root = True
            elif k == NO_VIEW:
                if not view_open:
                    open_view(t.line, None)
                need_as_and_root(t.line)
                if per_as:
                    name = sec.lines[-1].split(": ", 1)[1] if sec.lines else "memory"
                    sec.add(f"{NO_FLATVIEW} for address space '{name}'", t.line)
                else:
                    sec.add(NO_FLATVIEW, t.line)
            elif k == REGION:
                if not view_open:
                    self.note(t.line, "missing 'FlatView #N' header implied")
                    open_view(t.line, None)
                need_as_and_root(t.line)
                for e in elided:
                    sec.elide(Elision(e.line, e.words, 2))
                elided = []
                sec.add("  " + t.text, t.line)
                sec.ranges += 1
                ranges_in_view += 1
            elif k == ELISION:
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


def _as_for_root(root: str) -> str:
    return {"system": "memory", "io": "I/O"}.get(root, root)


def _root_for_as(name: str) -> tuple[str, str]:
    """The root region (name, range end) an address space of this name usually has."""
    if name == "I/O":
        return "io", "000000000000ffff"
    return ("system" if name in ("memory", "") or name.startswith("cpu-") else "(implied root)",
            "ffffffffffffffff")


class _TreeWriter:
    """Tree blocks to QEMU's grammar: levels from indentation, implied headers and
    roots, ``memory-region:`` blocks for alias targets the paste lacks."""

    def __init__(self, blocks: list[_Block], note: Callable[[int, str], None]) -> None:
        self.blocks = blocks
        self.note = note
        self.sec = Section("tree")
        self._parsed: list[TreeLine | None] | None = None

    def write(self) -> Section:
        sec = self.sec
        have = {b.heads[0].text[15:] for b in self.blocks if b.region_block and b.heads}
        if self.blocks and all(b.region_block for b in self.blocks):
            # No address-space block at all: the paste is a `memory-region:` excerpt, and
            # no printing can queue a block without one. Read each as an address space's.
            for b in self.blocks:
                name = b.heads[0].text[15:]
                self.note(b.heads[0].line, "a 'memory-region:' block without any "
                          f"'address-space:' block read as 'address-space: {name}'")
                b.region_block = False
                b.heads[0].text = AS_HEADER + name
                have.discard(name)
        written: list[tuple[_Block, list[str]]] = []
        for b in self.blocks:
            written.append((b, self._block(b)))
        missing = self._missing_targets(written, have)
        for name, (word, end, line) in missing.items():
            copy = self._subtree_of(name)
            if copy:
                self.note(line, f"alias target {name!r} has no 'memory-region:' block in the "
                                "paste: one implied, repeating its lines in the tree")
            else:
                self.note(line, f"alias target {name!r} has no 'memory-region:' block in the "
                                "paste: one implied (its size covers the alias windows)")
                copy = [f"  0000000000000000-{end} (prio 0, {word}): {name}"]
            sec.add(MR_HEADER + name, line, implied=True)
            for ln in copy:
                sec.add(ln, line, implied=True)
            sec.add("", line, implied=True)
        return sec

    def _subtree_of(self, name: str) -> list[str]:
        """The lines a ``memory-region:`` block of the region called ``name`` prints, when
        the tree shows that region: its subtree, from its own address in its container
        (QEMU prints a block's root at offset 0 of nothing)."""
        if self._parsed is None:  # once per section: many targets may need it
            self._parsed = []
            for ln in self.sec.lines:
                try:
                    self._parsed.append(parse_tree_line(ln, 0, owners=has_owner_suffix(ln))
                                        if ln.startswith("  ") else None)
                except ParseError:
                    self._parsed.append(None)
        parsed = self._parsed
        at = next((i for i, t in enumerate(parsed)
                   if t is not None and t.name == name and not t.is_alias and not t.overflow),
                  None)
        if at is None:
            return []
        top = parsed[at]
        assert top is not None
        base = 0
        for t in reversed(parsed[:at]):
            if t is None:
                break
            if t.level == top.level - 1:
                base = t.start
                break
        out: list[str] = []
        for i in range(at, len(parsed)):
            t = parsed[i]
            if t is None or (i > at and t.level <= top.level) or t.overflow:
                break
            level = t.level - top.level + 1
            out.append("  " * level + f"{hex16(t.start - base)}-{hex16(t.end - base)}"
                       + self.sec.lines[i].lstrip(" ")[33:])
        return out

    def _block(self, b: _Block) -> list[str]:
        sec = self.sec
        first_line = (b.heads or b.regions)[0].line
        levels = self._levels(b)
        root_name: str | None = None
        if not b.heads:
            root = b.regions[0].text if b.regions else ""
            name = root.split("): ", 1)[1] if "): " in root else ""
            as_name = _as_for_root(name) if levels and levels[0] == 1 else "memory"
            self.note(first_line, f"missing header implied: 'address-space: {as_name}'")
            sec.add(AS_HEADER + as_name, first_line, implied=True)
            head_name = as_name
        else:
            for h in b.heads:
                sec.add(h.text if h.kind == TREE_HEAD else AS_HEADER + h.text, h.line)
            t = b.heads[0]
            head_name = t.text[15:] if t.kind == TREE_HEAD else t.text
        # A `memory-region:` block may start below its root: QEMU hides a disabled root
        # and prints its children (orphans). An address space's root is never hidden.
        deep = bool(levels) and min(levels) > 1 and not b.region_block
        if deep or self._roots(b, levels) > 1:
            root_name, end = _root_for_as(head_name)
            if b.region_block:
                root_name = head_name
            line = b.regions[0].line
            self.note(line, f"missing root region line implied: {root_name!r}")
            sec.add(f"  0000000000000000-{end} (prio 0, i/o): {root_name}", line, implied=True)
            levels = [max(2, lv if min(levels) > 1 else lv + 1) for lv in levels]
        el = dict[int, list[Elision]]()
        for idx, e in b.elisions:
            el.setdefault(idx, []).append(e)
        for idx, (t, lv) in enumerate(zip(b.regions, levels, strict=True)):
            for e in el.pop(idx, []):
                sec.elide(Elision(e.line, e.words, 2 * lv))
            marks = "[DETECTED OVERFLOW!] " * t.markers
            sec.add(marks + "  " * lv + t.text, t.line)
            sec.ranges += 1
        for rest in el.values():
            for e in rest:
                sec.elide(Elision(e.line, e.words, 4 if b.regions else 0))
        last_line = (b.regions or b.heads)[-1].line
        sec.add("", last_line)
        return []

    def _roots(self, b: _Block, levels: list[int]) -> int:
        return sum(1 for lv in levels if lv == 1)

    def _levels(self, b: _Block) -> list[int]:
        """Levels from 1 (the block root) of the block's region lines."""
        regs = b.regions
        if not regs:
            return []
        ind = [t.indent for t in regs]
        r0 = min(ind)
        deltas = Counter(b2 - a for a, b2 in itertools.pairwise(ind) if b2 > a)
        step = min(deltas, key=lambda d: (-deltas[d], d)) if deltas else 2
        if step != 2:
            first = next(regs[i + 1].line for i in range(len(ind) - 1)
                         if ind[i + 1] - ind[i] == step)
            self.note(first, f"indentation step of {step} columns (QEMU's is 2) read as one level")
        if all((x - r0) % step == 0 for x in ind):
            levels = [(x - r0) // step + 1 for x in ind]
        else:
            self.note(regs[0].line, "indentation not a multiple of one step: levels read "
                                    "from nesting")
            levels = []
            stack: list[int] = []
            for x in ind:
                while stack and x < stack[-1]:
                    stack.pop()
                if not stack or x > stack[-1]:
                    stack.append(x)
                levels.append(len(stack))
        # The header's own indentation says where level 1 is (a fragment may start deeper).
        head = b.heads[0] if b.heads else None
        if head is not None and head.kind == TREE_HEAD and r0 - head.indent >= 2 * step \
                and (r0 - head.indent) % step == 0:
            shift = (r0 - head.indent) // step - 1
            levels = [lv + shift for lv in levels]
        return self._fold_roots(regs, levels)

    def _fold_roots(self, regs: list[Token], levels: list[int]) -> list[int]:
        """Later lines at the root's level that lie inside the root are its subregions
        (one block prints one region)."""
        if not levels or levels[0] != 1:
            return levels
        m = _SIZE.match(regs[0].text)
        if m is None:
            return levels
        lo, hi = int(m[1], 16), int(m[2], 16)
        out = list(levels)
        demote = False
        for i in range(1, len(regs)):
            if levels[i] == 1:
                mm = _SIZE.match(regs[i].text)
                demote = mm is not None and lo <= int(mm[1], 16) and int(mm[2], 16) <= hi
                if not demote:
                    return levels
                self.note(regs[i].line, "line at the root's indentation read as a subregion "
                                        "of the root (it lies inside it)")
            if demote:
                out[i] = levels[i] + 1
        return out

    def _missing_targets(self, written: list[tuple[_Block, list[str]]],
                         have: set[str]) -> dict[str, tuple[str, str, int]]:
        """Alias targets without a block: name -> (type word, end, first line)."""
        missing: dict[str, tuple[str, str, int]] = {}
        for line, orig in zip(self.sec.lines, self.sec.origin, strict=True):
            m = _ALIAS_TARGET.search(line)
            if m is None:
                continue
            name = m["target"]
            if name in have:
                continue
            word = m["type"].removeprefix("nv-")
            end = m["aend"]
            old = missing.get(name)
            if old is not None:
                end = max(end, old[1])
                word = old[0]
            missing[name] = (word, end, old[2] if old else orig)
        return missing


_ALIAS_TARGET = re.compile(r"\(prio -?\d+, (?P<type>[^()]+)\): alias .* @(?P<target>.*) "
                           r"[0-9a-f]{16}-(?P<aend>[0-9a-f]{16})(?: \[disabled\])?(?: .*)?\Z")


def reprint(sec: Section, eol: str = "\n") -> str:
    """The section as read, with its elision markers where they were."""
    out: list[str] = []
    at = dict[int, list[Elision]]()
    for i, e in sec.elisions:
        at.setdefault(i, []).append(e)
    for i, ln in enumerate(sec.lines):
        out.extend(e.marker() for e in at.pop(i, []))
        out.append(ln)
    for rest in at.values():
        out.extend(e.marker() for e in rest)
    return eol.join(out) + eol if out else ""


def refuse(text: str, kind: str, paste: Paste) -> ParseError:
    """The error for a paste with no ``kind`` text in it."""
    first = next((i for i, ln in enumerate(text.split("\n"), 1) if ln.strip()), 1)
    other = "`info mtree -f`" if kind == "tree" else "`info mtree` (tree)"
    what = "tree text (`info mtree`)" if kind == "tree" else "flat text (`info mtree -f`)"
    reason = f"no {what} found"
    if any(s.kind != kind for s in paste.sections):
        reason += f": this is {other} output"
    elif "Physical sections" in text:
        reason += ": only a `-d` dispatch dump, without the range lines of its FlatView"
    elif not paste.sections:
        reason += ": no region or range line anywhere"
    src = text.split("\n")[first - 1].rstrip("\r") if text else ""
    return ParseError(reason, line=first, column=1, source_line=src)
