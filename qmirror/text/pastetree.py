"""The forgiving reader's sections, and the writer of tree sections.

A :class:`Section` is a tree or flat text found in a paste, written in QEMU's exact
grammar, with its :class:`Elision` markers and the indexes of the lines it implied.
:class:`TreeWriter` turns the blocks the reader (:mod:`qmirror.text.forgiving`) found
into such a section: levels from the indentation, implied headers and roots, and
``memory-region:`` blocks for alias targets the paste lacks.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from qmirror.errors import ParseError
from qmirror.text.grammar import (
    AS_HEADER,
    MR_HEADER,
    RANGE_WIDTH,
    TreeLine,
    has_owner_suffix,
    hex16,
    parse_tree_line,
)
from qmirror.text.pastelines import TREE_HEAD, Token


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
class Block:
    heads: list[Token]
    regions: list[Token] = field(default_factory=list)
    #: (index in regions before which, elision)
    elisions: list[tuple[int, Elision]] = field(default_factory=list)
    region_block: bool = False


_SIZE = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16}) \(prio (-?\d+), ([^()]+)\): ?(.*)\Z")


def as_for_root(root: str) -> str:
    return {"system": "memory", "io": "I/O"}.get(root, root)


def _root_for_as(name: str) -> tuple[str, str]:
    """The root region (name, range end) an address space of this name usually has."""
    if name == "I/O":
        return "io", "000000000000ffff"
    return (
        "system" if name in ("memory", "") or name.startswith("cpu-") else "(implied root)",
        "ffffffffffffffff",
    )


class TreeWriter:
    """Tree blocks to QEMU's grammar: levels from indentation, implied headers and
    roots, ``memory-region:`` blocks for alias targets the paste lacks."""

    def __init__(self, blocks: list[Block], note: Callable[[int, str], None]) -> None:
        self.blocks = blocks
        self.note = note
        self.sec = Section("tree")
        self._parsed: list[TreeLine | None] | None = None

    def write(self) -> Section:
        sec = self.sec
        have = {
            b.heads[0].text[len(MR_HEADER) :] for b in self.blocks if b.region_block and b.heads
        }
        if self.blocks and all(b.region_block for b in self.blocks):
            # No address-space block at all: the paste is a `memory-region:` excerpt, and
            # no printing can queue a block without one. Read each as an address space's.
            for b in self.blocks:
                name = b.heads[0].text[len(MR_HEADER) :]
                self.note(
                    b.heads[0].line,
                    "a 'memory-region:' block without any "
                    f"'address-space:' block read as 'address-space: {name}'",
                )
                b.region_block = False
                b.heads[0].text = AS_HEADER + name
                have.discard(name)
        written: list[tuple[Block, list[str]]] = []
        for b in self.blocks:
            written.append((b, self._block(b)))
        missing = self._missing_targets(written, have)
        for name, (word, end, line) in missing.items():
            copy = self._subtree_of(name)
            if copy:
                self.note(
                    line,
                    f"alias target {name!r} has no 'memory-region:' block in the "
                    "paste: one implied, repeating its lines in the tree",
                )
            else:
                self.note(
                    line,
                    f"alias target {name!r} has no 'memory-region:' block in the "
                    "paste: one implied (its size covers the alias windows)",
                )
                copy = [f"  0000000000000000-{end} (prio 0, {word}): {name}"]
            sec.add(MR_HEADER + name, line, implied=True)
            for ln in copy:
                sec.add(ln, line, implied=True)
            sec.add("", line)  # a blank line says nothing: not marked
        return sec

    def _parse_lines(self) -> list[TreeLine | None]:
        """The section's region lines as the grammar reads them (once per section)."""
        if self._parsed is None or len(self._parsed) != len(self.sec.lines):
            self._parsed = []
            for ln in self.sec.lines:
                try:
                    self._parsed.append(
                        parse_tree_line(ln, 0, owners=has_owner_suffix(ln))
                        if ln.startswith("  ")
                        else None
                    )
                except ParseError:
                    self._parsed.append(None)
        return self._parsed

    def _subtree_of(self, name: str) -> list[str]:
        """The lines a ``memory-region:`` block of the region called ``name`` prints, when
        the tree shows that region: its subtree, from its own address in its container
        (QEMU prints a block's root at offset 0 of nothing)."""
        parsed = self._parse_lines()
        at = next(
            (
                i
                for i, t in enumerate(parsed)
                if t is not None and t.name == name and not t.is_alias and not t.overflow
            ),
            None,
        )
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
            out.append(
                "  " * level
                + f"{hex16(t.start - base)}-{hex16(t.end - base)}"
                + self.sec.lines[i].lstrip(" ")[RANGE_WIDTH:]
            )
        return out

    def _block(self, b: Block) -> list[str]:
        sec = self.sec
        first_line = (b.heads or b.regions)[0].line
        levels = self._levels(b)
        root_name: str | None = None
        if not b.heads:
            root = b.regions[0].text if b.regions else ""
            name = root.split("): ", 1)[1] if "): " in root else ""
            as_name = as_for_root(name) if levels and levels[0] == 1 else "memory"
            self.note(first_line, f"missing header implied: 'address-space: {as_name}'")
            sec.add(AS_HEADER + as_name, first_line, implied=True)
            head_name = as_name
        else:
            for h in b.heads:
                sec.add(
                    h.text if h.kind == TREE_HEAD else AS_HEADER + h.text,
                    h.line,
                    implied=h.implied,
                )
            t = b.heads[0]
            head_name = _header_name(t.text) if t.kind == TREE_HEAD else t.text
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
            sec.add(marks + "  " * lv + t.text, t.line, implied=t.implied)
            sec.ranges += 1
        for rest in el.values():
            for e in rest:
                sec.elide(Elision(e.line, e.words, 4 if b.regions else 0))
        last_line = (b.regions or b.heads)[-1].line
        sec.add("", last_line)
        return []

    def _roots(self, b: Block, levels: list[int]) -> int:
        return sum(1 for lv in levels if lv == 1)

    def _levels(self, b: Block) -> list[int]:
        """Levels from 1 (the block root) of the block's region lines."""
        regs = b.regions
        if not regs:
            return []
        ind = [t.indent for t in regs]
        r0 = min(ind)
        deltas = Counter(b2 - a for a, b2 in itertools.pairwise(ind) if b2 > a)
        step = min(deltas, key=lambda d: (-deltas[d], d)) if deltas else 2
        if step != 2:
            first = next(
                regs[i + 1].line for i in range(len(ind) - 1) if ind[i + 1] - ind[i] == step
            )
            self.note(first, f"indentation step of {step} columns (QEMU's is 2) read as one level")
        if all((x - r0) % step == 0 for x in ind):
            levels = [(x - r0) // step + 1 for x in ind]
        else:
            self.note(
                regs[0].line, "indentation not a multiple of one step: levels read from nesting"
            )
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
        if (
            head is not None
            and head.kind == TREE_HEAD
            and r0 - head.indent >= 2 * step
            and (r0 - head.indent) % step == 0
        ):
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
                self.note(
                    regs[i].line,
                    "line at the root's indentation read as a subregion "
                    "of the root (it lies inside it)",
                )
            if demote:
                out[i] = levels[i] + 1
        return out

    def _missing_targets(
        self, written: list[tuple[Block, list[str]]], have: set[str]
    ) -> dict[str, tuple[str, str, int]]:
        """Alias targets without a block: name -> (type word, end, first line)."""
        missing: dict[str, tuple[str, str, int]] = {}
        # The grammar's own reading of each line: linear, whatever the names contain.
        for t, orig in zip(self._parse_lines(), self.sec.origin, strict=True):
            if t is None or t.alias_target is None or t.alias_target in have:
                continue
            name = t.alias_target
            end = hex16(t.alias_end)
            word = t.type_word
            old = missing.get(name)
            if old is not None:
                end = max(end, old[1])
                word = old[0]
            missing[name] = (word, end, old[2] if old else orig)
        return missing


def _header_name(text: str) -> str:
    """The name on an ``address-space:`` or ``memory-region:`` header line."""
    for header in (AS_HEADER, MR_HEADER):
        if text.startswith(header):
            return text[len(header) :]
    return text
