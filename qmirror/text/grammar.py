"""The line grammar of ``info mtree`` text, in and out, and every literal of its documents.

Each line of a document is parsed here, one at a time, and printed here; the
document structure (headers, blocks, blank lines, FlatView blocks) is
:mod:`qmirror.text.document`, which takes its header literals from this module (they
are defined once, below). The whole grammar is in ``docs/grammar.md``. QEMU 7.2's
lines (reference §4)::

    region-line = overflow* indent RANGE " (prio " INT ", " type "): " body
    overflow    = "[DETECTED OVERFLOW!] "            (before the indent; may be glued
                                                      to a later line or a header)
    indent      = "  " * level                       (level >= 1; the root is level 1)
    RANGE       = HEX16 "-" HEX16                    (inclusive end, modulo 2**64)
    type        = ["nv-"] ("ram" | "rom" | "romd" | "ramd" | "i/o" | "container")
                | ("R" | "-") ("W" | "-")             (access letters, before 2.9)
    body        = (alias | NAME) [" [disabled]"] [owners]
    alias       = "alias " NAME " @" NAME " " HEX16 "-" HEX16
    owners      = " orphan" | [" owner:" objref] [" parent:" objref]   (only with -o)
    objref      = "{" ("dev" | "obj") " " ("id" | "path" | "type") "=" TEXT "}"
    as-line     = ' AS "' NAME '", root: ' NAME [", alias " NAME]
    range-line  = "  " RANGE " (prio " INT ", " type "): " NAME [" @" HEX16] [owners]
                  (" " ACCEL)*
    ACCEL       = "KVM" | "kvm"                       (once per AS the accelerator tracks)

The ``-d`` dump's lines are :mod:`qmirror.text.dispatchlines`. Older QEMUs
(:mod:`qmirror.text.dialect`) differ in the type field (access letters before 2.9)
and the place of the overflow marker (after the indentation before 5.1).

Names are free text (spaces, ``@``, brackets), so lines are taken apart from the
right: alias windows, ``[disabled]``, owner suffixes, offsets and accelerator words
are fixed-shape and anchored at the end. A region line is the hot path of big trees:
one regex whose groups are its fields, one look-up for its type field, and a named
tuple built in C (issue 13).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import NamedTuple

from qmirror.core.model import MASK64, ObjectRef, Ownership
from qmirror.errors import ParseError


OVERFLOW_MARKER = "[DETECTED OVERFLOW!] "
_MARKER_LEN = len(OVERFLOW_MARKER)
TYPE_WORDS = ("ram", "rom", "romd", "ramd", "i/o", "container")
#: Tried in this order where a type word is expected, so ``romd`` is not read as ``rom``.
_TYPE_WORDS_LONGEST_FIRST = tuple(sorted(TYPE_WORDS, key=len, reverse=True))
#: Access letters of QEMU 1.1–2.8: readable (``R``, else ``-``), writable (``W``, else ``-``).
ACCESS_LETTERS = ("RW", "R-", "-W", "--")
#: Header and block lines of the two documents (see the grammar above): every literal
#: of the document structure is defined here, once.
AS_HEADER = "address-space: "
MR_HEADER = "memory-region: "
#: The line QEMU 1.1–2.3 printed between the address spaces and the aliased regions.
ALIASES_HEADER = "aliases"
FLATVIEW_HEADER = "FlatView #"
#: Digits of a FlatView's number at most: few enough for int() (issue 6).
FLATVIEW_NUMBER_DIGITS = 9
AS_LINE_PREFIX = ' AS "'
ROOT_PREFIX = " Root memory region: "
#: What the root line shows for a FlatView without a root.
NO_ROOT = "(none)"
NO_FLATVIEW = "  No rendered FlatView"
#: QEMU 2.9/2.10: one block per address space, under this header.
FLAT_AS_HEADER = "address-space (flat view): "
#: QEMU 2.9/2.10: the line of an address space whose FlatView is empty.
NO_FLATVIEW_FOR = NO_FLATVIEW + " for address space '{}'"
#: Range lines of ``-f`` are indented by this.
RANGE_INDENT = "  "
#: How the ``-d`` dump's lines start (its grammar: :mod:`qmirror.text.dispatchlines`).
DISPATCH_STARTS = ("  Dispatch", "    ", "\t")
ACCEL_WORDS = ("KVM", "kvm")
DISABLED_SUFFIX = " [disabled]"
ALIAS_PREFIX = "alias "
ORPHAN_SUFFIX = " orphan"
#: ``HEX16-HEX16``: the width of a printed range.
RANGE_WIDTH = 33

#: Sixteen lower-case hex digits: every address QEMU prints.
HEX16_RE = r"[0-9a-f]{16}"
_HEX16 = HEX16_RE
_TYPE = r"(?P<nv>nv-)?(?P<type>romd|ramd|ram|rom|i/o|container|[R-][W-])"
_OBJREF = r"\{(?:dev|obj) (?:id|path|type)=[^{}]*\}"
_OWNERS = rf"(?: orphan|(?: owner:{_OBJREF})?(?: parent:{_OBJREF})?)"

_MARKER_RE = r"(?:\[DETECTED OVERFLOW!\] )*"
#: A region line up to its body, each group one field: the head (overflow markers and
#: the indentation: markers come before it from 5.1, after it before), start, end,
#: priority, the type field (checked against ``_TYPE_FIELDS``) and the body.
_REGION_LINE = re.compile(
    rf"({_MARKER_RE} *{_MARKER_RE})({_HEX16})-({_HEX16})"
    rf" \(prio (-?\d{{1,11}}), ([a-zRW/-]+)\): (.*)\Z",
    re.DOTALL,
)
#: An alias window at the end of a line's body, matched at its fixed offset.
_ALIAS_WINDOW = re.compile(rf" ({_HEX16})-({_HEX16})\Z")
_OWNER_SUFFIX = re.compile(rf"(?P<owners>{_OWNERS})\Z")
_OBJREF_PARTS = re.compile(r"\{(?P<kind>dev|obj) (?P<key>id|path|type)=(?P<value>[^{}]*)\}")
_FLAT_RANGE = re.compile(
    rf"  (?P<start>{_HEX16})-(?P<end>{_HEX16}) \(prio (?P<prio>-?\d{{1,11}}), {_TYPE}\): "
    r"(?P<body>.*)\Z",
    re.DOTALL,
)
_OFFSET_SUFFIX = re.compile(rf" @(?P<offset>{_HEX16})\Z")
_ACCEL_TAILS = tuple(" " + w for w in ACCEL_WORDS)


def _split_accel(body: str) -> tuple[str, tuple[str, ...]]:
    """Take the trailing accelerator words (`` KVM``) off a range line's body.

    A loop from the right, not a regex search: a body of many `` kvm`` followed by
    something else made the search quadratic (found by fuzzing).
    """
    words: list[str] = []
    while body.endswith(_ACCEL_TAILS):
        cut = body.rfind(" ")
        words.append(body[cut + 1 :])
        body = body[:cut]
    words.reverse()
    return body, tuple(words)


_AS_LINE = re.compile(r' AS "(?P<name>.*)", root: (?P<root>.*?)(?:, alias (?P<alias>.*))?\Z')


def hex16(value: int) -> str:
    """An address as QEMU prints it: 64-bit, lower case, at least 16 digits."""
    return f"{value & MASK64:016x}"


def last(size: int) -> int:
    """QEMU's ``MR_SIZE``: offset of the last byte, with size 0 shown like size 1."""
    return 0 if size == 0 else (size - 1) & MASK64


# -- owner suffixes (-o) ------------------------------------------------------


def parse_owners(text: str) -> Ownership:
    """Turn an owner suffix (``" owner:{dev id=x} parent:{obj path=/y}"``) into data."""
    if text == ORPHAN_SUFFIX:
        return Ownership(None, None)
    owner = parent = None
    for label, ref in re.findall(r" (owner|parent):(\{[^{}]*\})", text):
        m = _OBJREF_PARTS.fullmatch(ref)
        assert m is not None  # guaranteed by _OWNERS
        obj = ObjectRef(m["kind"] == "dev", m["key"], m["value"])
        if label == "owner":
            owner = obj
        else:
            parent = obj
    return Ownership(owner, parent)


def format_owners(ownership: Ownership) -> str:
    """The ``-o`` suffix of a line, with its leading space."""
    if ownership.owner is None and ownership.parent is None:
        return ORPHAN_SUFFIX
    out = ""
    for label, ref in (("owner", ownership.owner), ("parent", ownership.parent)):
        if ref is not None:
            out += f" {label}:{{{'dev' if ref.is_device else 'obj'} {ref.key}={ref.value}}}"
    return out


_ORPHAN = Ownership(None, None)


@functools.lru_cache(maxsize=65536)
def _owners_cached(suffix: str) -> Ownership | None:
    """The suffix (from the first ``" owner:{"``/``" parent:{"`` on) as data, or None."""
    if _OWNER_SUFFIX.fullmatch(suffix) is None:
        return None
    return parse_owners(suffix)


def split_owners(body: str) -> tuple[str, Ownership | None]:
    """Split a trailing owner suffix off ``body`` if it has a non-empty one."""
    if body.endswith(ORPHAN_SUFFIX):
        return body[: -len(ORPHAN_SUFFIX)], _ORPHAN
    if not body.endswith("}"):
        return body, None
    # Taken apart from the right: `[ owner:{…}][ parent:{…}]`; names may contain braces,
    # so a suffix that does not parse falls back to the general search.
    cut = body.rfind(" parent:{")
    owner_at = body.rfind(" owner:{", 0, cut if cut >= 0 else len(body))
    if owner_at >= 0 and (cut < 0 or body.find("}", owner_at) == cut - 1):
        cut = owner_at
    if cut >= 0:
        ownership = _owners_cached(body[cut:])
        if ownership is not None:
            return body[:cut], ownership
    m = _OWNER_SUFFIX.search(body)
    if m is None or not m["owners"]:
        return body, None
    return body[: m.start()], parse_owners(m["owners"])


# -- tree lines --------------------------------------------------------------


class TreeLine(NamedTuple):
    """One region line of tree mode, as printed.

    ``start``/``end`` are the printed (absolute, wrapped) numbers; ``level`` is the
    indentation level (1 for a block's root). ``tail`` is the text after the range,
    used to compare two printings of the same region: a slice of ``text``, the line as
    read (after any overflow markers), which the document holds anyway, so the tail
    is not kept a second time (issue 13: memory per region).

    A named tuple, not a dataclass: a big tree has one per line, and a tuple is built
    in C (issue 13: parse speed).
    """

    lineno: int
    level: int
    overflow: int
    start: int
    end: int
    priority: int
    nonvolatile: bool
    type_word: str
    name: str
    alias_target: str | None
    alias_start: int
    alias_end: int
    disabled: bool
    ownership: Ownership | None
    text: str
    tail_at: int

    @property
    def is_alias(self) -> bool:
        return self.alias_target is not None

    @property
    def tail(self) -> str:
        """The text after the range (``(prio …): …``)."""
        return self.text[self.tail_at :]


def strip_overflow(text: str) -> tuple[int, str]:
    """Count and remove leading ``[DETECTED OVERFLOW!] `` markers."""
    n = 0
    while text.startswith(OVERFLOW_MARKER):
        text = text[_MARKER_LEN:]
        n += 1
    return n, text


def parse_tree_line(text: str, lineno: int, *, owners: bool, root_level: int = 1) -> TreeLine:
    """Parse one region line of tree mode (without its line ending).

    :param owners: the document was printed with ``-o``: every line has an owner suffix.
    :param root_level: indentation level of a block's root (0 before QEMU 2.4). The
        line's :attr:`TreeLine.level` counts from 1 for the root either way.
    :raise ParseError: pointing at the first character that breaks the grammar.
    """
    return region_line(text, lineno, owners, root_level)


#: The type field (``nv-ram``, ``RW``) → its type word (one shared string per word, not
#: one per line) and whether it is non-volatile. A field not in here is no type field.
_TYPE_FIELDS: dict[str, tuple[str, bool]] = {
    nv + w: (w, nv != "") for w in (*TYPE_WORDS, *ACCESS_LETTERS) for nv in ("", "nv-")
}
#: Type words as one shared string each (what the regexes capture is a new string).
_WORDS: dict[str, str] = {w: w for w in (*TYPE_WORDS, "iommu")}
_NEW = tuple.__new__
#: The priorities QEMU's machines use, as ints: a look-up is cheaper than int().
_PRIORITIES: dict[str, int] = {str(p): p for p in range(-256, 257)}


def region_line(
    text: str, lineno: int, owners: bool, root_level: int, filename: str | None = None
) -> TreeLine:
    """:func:`parse_tree_line` with positional arguments: the hot path of big trees.

    One regex takes the line apart up to its body; its groups map to the fields. Only
    the body (free text) is looked at again, from the right.
    """
    m = _REGION_LINE.match(text)
    if m is not None:
        head, start, end, prio, type_field, body = m.groups()
        fields = _TYPE_FIELDS.get(type_field)
    if m is None or fields is None:
        at = len(text) - len(strip_overflow(text)[1])
        raise _diagnose_region_line(text, lineno, at, filename)
    overflow = lead = 0
    indent = len(head)
    if "[" in head:  # rare: markers of wrapped ranges
        overflow = head.count(OVERFLOW_MARKER)
        lead = len(text) - len(strip_overflow(text)[1])
        indent -= overflow * _MARKER_LEN
    if indent & 1 or indent >> 1 < root_level:
        raise ParseError(
            f"indentation of {indent} spaces: QEMU indents by two per level, from level "
            f"{root_level}",
            line=lineno,
            column=lead + 1,
            source_line=text,
            filename=filename,
        )
    ownership = None
    if owners:
        body, ownership = _required_owners(body, text, lineno, filename)
    if lead:
        text = text[lead:]
    disabled = body.endswith(DISABLED_SUFFIX)
    if disabled:
        body = body[: -len(DISABLED_SUFFIX)]
    target = None
    astart = aend = 0
    if body.startswith(ALIAS_PREFIX):
        body, target, astart, aend = _split_alias(body)
    priority = _PRIORITIES.get(prio)
    if priority is None:
        priority = int(prio)
    return _NEW(
        TreeLine,
        (
            lineno,
            (indent >> 1) + 1 - root_level,
            overflow,
            int(start, 16),
            int(end, 16),
            priority,
            fields[1],
            fields[0],
            body,
            target,
            astart,
            aend,
            disabled,
            ownership,
            text,
            len(head) - lead + RANGE_WIDTH,
        ),
    )


def _required_owners(
    body: str, text: str, lineno: int, filename: str | None = None
) -> tuple[str, Ownership]:
    """:func:`split_owners` on a line of ``-o`` output, where the suffix must be there."""
    body, ownership = split_owners(body)
    if ownership is None:
        raise ParseError(
            "expected an owner suffix (owner:{…}, parent:{…} or orphan) as on the "
            "other lines of this `-o` output",
            line=lineno,
            column=len(text) + 1,
            source_line=text,
            filename=filename,
        )
    return body, ownership


#: `` HEX16-HEX16`` at the end of an alias line's body: its window.
_WINDOW_WIDTH = 1 + RANGE_WIDTH


def _split_alias(body: str) -> tuple[str, str | None, int, int]:
    """``alias NAME @TARGET HEX16-HEX16`` → name, target and window; else body, None.

    The window is fixed-width at the end, and the last " @" before it splits the names
    (targets do not contain " @").
    """
    cut = len(body) - _WINDOW_WIDTH
    first = len(ALIAS_PREFIX)
    wm = _ALIAS_WINDOW.match(body, cut) if cut >= first + 2 else None
    at = body.rfind(" @", first, cut) if wm is not None else -1
    if wm is None or at < 0:
        return body, None, 0, 0
    return body[first:at], body[at + 2 : cut], int(wm[1], 16), int(wm[2], 16)


def format_tree_line(
    *,
    level: int,
    start: int,
    end: int,
    priority: int,
    nonvolatile: bool,
    type_word: str,
    name: str,
    alias_target: str | None = None,
    alias_start: int = 0,
    alias_end: int = 0,
    disabled: bool = False,
    ownership: Ownership | None = None,
    root_level: int = 1,
) -> str:
    """One region line of tree mode, without the overflow marker and line ending.

    :param level: 1 for a block's root; :param root_level: its indentation level.
    :param type_word: a type word, or access letters (``RW``) before QEMU 2.9.
    """
    body = (
        name
        if alias_target is None
        else f"{ALIAS_PREFIX}{name} @{alias_target} {hex16(alias_start)}-{hex16(alias_end)}"
    )
    if disabled:
        body += DISABLED_SUFFIX
    if ownership is not None:
        body += format_owners(ownership)
    nv = "nv-" if nonvolatile else ""
    indent = "  " * (level - 1 + root_level)
    return f"{indent}{hex16(start)}-{hex16(end)} (prio {priority}, {nv}{type_word}): {body}"


# -- flat lines --------------------------------------------------------------


@dataclass(slots=True)
class FlatRangeLine:
    """One range line of ``-f`` output."""

    lineno: int
    start: int
    end: int
    priority: int
    nonvolatile: bool
    type_word: str
    name: str
    offset: int
    ownership: Ownership | None
    accel: tuple[str, ...]


def parse_flat_range(
    text: str, lineno: int, *, owners: bool, filename: str | None = None
) -> FlatRangeLine:
    """Parse one range line of ``-f`` output.

    :param owners: the document was printed with ``-o``.
    :raise ParseError: pointing at the first character that breaks the grammar.
    """
    m = _FLAT_RANGE.match(text)
    if m is None:
        raise _diagnose_flat_range(text, lineno, filename)
    body = m["body"]
    body, accel = _split_accel(body)
    ownership = None
    if owners:
        body, ownership = _required_owners(body, text, lineno, filename)
    offset = 0
    om = _OFFSET_SUFFIX.search(body)
    if om is not None:
        offset = int(om["offset"], 16)
        body = body[: om.start()]
        if offset == 0:
            # QEMU prints ` @…` only for a non-zero offset; keep the text unambiguous.
            raise ParseError(
                "offset @0000000000000000: QEMU prints ` @offset` only when it is not zero",
                line=lineno,
                column=len(text) - len(m["body"]) + len(body) + 1,
                source_line=text,
                filename=filename,
            )
    return FlatRangeLine(
        lineno=lineno,
        start=int(m["start"], 16),
        end=int(m["end"], 16),
        priority=int(m["prio"]),
        nonvolatile=m["nv"] is not None,
        type_word=_WORDS.get(m["type"], m["type"]),
        name=body,
        offset=offset,
        ownership=ownership,
        accel=accel,
    )


def format_flat_range(
    *,
    start: int,
    end: int,
    priority: int,
    nonvolatile: bool,
    type_word: str,
    name: str,
    offset: int,
    ownership: Ownership | None = None,
    accel: tuple[str, ...] = (),
) -> str:
    """One range line of ``-f`` output, without the line ending."""
    nv = "nv-" if nonvolatile else ""
    line = f"{RANGE_INDENT}{hex16(start)}-{hex16(end)} (prio {priority}, {nv}{type_word}): {name}"
    if offset:
        line += f" @{hex16(offset)}"
    if ownership is not None:
        line += format_owners(ownership)
    for word in accel:
        line += " " + word
    return line


_MARKERS = rf"(?:{re.escape(OVERFLOW_MARKER)})*"
_REGION_LINE_START = re.compile(rf"{_MARKERS} *{_MARKERS}{_HEX16}-{_HEX16} \(prio ")


def is_region_line(text: str) -> bool:
    """Whether ``text`` looks like a region or range line (indent, then a range)."""
    return _REGION_LINE_START.match(text) is not None


def has_owner_suffix(text: str) -> bool:
    """Whether a range or region line ends in a non-empty ``-o`` suffix."""
    m = _OWNER_SUFFIX.search(_split_accel(text)[0])
    return m is not None and bool(m["owners"])


@dataclass(frozen=True, slots=True)
class ASLine:
    """`` AS "NAME", root: ROOT[, alias TARGET]`` of a FlatView block."""

    name: str
    root: str
    alias: str | None


def parse_as_line(text: str, lineno: int, filename: str | None = None) -> ASLine:
    """`` AS "NAME", root: ROOT[, alias TARGET]``."""
    m = _AS_LINE.match(text)
    if m is None:
        raise ParseError(
            "expected ' AS \"NAME\", root: ROOT'",
            line=lineno,
            column=1,
            source_line=text,
            filename=filename,
        )
    return ASLine(m["name"], m["root"], m["alias"])


def format_as_line(line: ASLine) -> str:
    text = f'{AS_LINE_PREFIX}{line.name}", root: {line.root}'
    if line.alias is not None:
        text += f", alias {line.alias}"
    return text


# -- diagnostics ----------------------------------------------------------------


def expect_at(
    text: str, pos: int, lineno: int, what: str, filename: str | None = None
) -> ParseError:
    """``expected WHAT, found X`` at ``pos`` (0-based) of line ``lineno``."""
    found = repr(text[pos]) if pos < len(text) else "end of line"
    return ParseError(
        f"expected {what}, found {found}",
        line=lineno,
        column=pos + 1,
        source_line=text,
        filename=filename,
    )


_HEXDIGITS = frozenset("0123456789abcdef")
_DECIMAL = re.compile(r"-?\d+")


def _range_head_error(text: str, pos: int, lineno: int, filename: str | None) -> ParseError | None:
    """The first break of ``HEX16-HEX16 (prio N, TYPE): `` from ``pos``, or None.

    The slow path of a line the regexes refused: walks the head the way the grammar
    reads it, so the error points at the character that breaks it.
    """

    def expected(at: int, what: str) -> ParseError:
        return expect_at(text, at, lineno, what, filename)

    for half, what in (
        (0, "16 lower-case hex digits (start)"),
        (17, "16 lower-case hex digits (end)"),
    ):
        if half and not text.startswith("-", pos + 16):
            return expected(pos + 16, "'-' between start and end")
        for i in range(pos + half, pos + half + 16):
            if i >= len(text) or text[i] not in _HEXDIGITS:
                return expected(i, what)
    pos += RANGE_WIDTH
    if not text.startswith(" (prio ", pos):
        return expected(pos, "' (prio '")
    pos += 7
    m = _DECIMAL.match(text, pos)
    if m is None:
        return expected(pos, "a decimal priority")
    if len(m[0].lstrip("-")) > 11:
        # Reliability fix (issue 6): bounded like the line regexes, so that int() never
        # sees thousands of digits (it raises ValueError past 4300).
        return ParseError(
            "priority too long: QEMU's priorities are 32-bit",
            line=lineno,
            column=pos + 1,
            source_line=text,
            filename=filename,
        )
    pos = m.end()
    if not text.startswith(", ", pos):
        return expected(pos, "', ' after the priority")
    pos += 2
    if text.startswith("nv-", pos):
        pos += 3
    word = next(
        (w for w in (*_TYPE_WORDS_LONGEST_FIRST, *ACCESS_LETTERS) if text.startswith(w, pos)), None
    )
    if word is None:
        return expected(pos, "a type word (ram, rom, romd, ramd, i/o)")
    if not text.startswith("): ", pos + len(word)):
        return expected(pos + len(word), "'): ' after the type word")
    return None


def _diagnose_region_line(
    text: str, lineno: int, pos: int, filename: str | None = None
) -> ParseError:
    """Why a tree line (its overflow markers end at ``pos``) is no region line."""
    indent_end = pos
    while indent_end < len(text) and text[indent_end] == " ":
        indent_end += 1
    if indent_end == pos:
        return expect_at(
            text,
            pos,
            lineno,
            "a header ('address-space: ' or 'memory-region: ') or an indented region line",
            filename,
        )
    return _range_head_error(text, indent_end, lineno, filename) or ParseError(
        "malformed region line", line=lineno, column=1, source_line=text, filename=filename
    )


def _diagnose_flat_range(text: str, lineno: int, filename: str | None = None) -> ParseError:
    """Why a line is no range line of ``-f``."""
    if not text.startswith(RANGE_INDENT):
        return expect_at(text, 0, lineno, "a range line indented by two spaces", filename)
    return _range_head_error(text, len(RANGE_INDENT), lineno, filename) or ParseError(
        "malformed range line", line=lineno, column=1, source_line=text, filename=filename
    )
