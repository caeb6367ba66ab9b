"""The dialects of ``info mtree`` text from QEMU 1.x to today (reference §4.8, §4.9).

A :class:`Dialect` is the set of format features one range of QEMU versions prints.
The grammar, the readers and the printers consult it; nothing else about versions
is hard-coded elsewhere. :func:`for_version` maps ``--qemu-version X.Y`` to a dialect;
:func:`decide_tree` (on evidence the tree parser collects) and :func:`detect_flat`
find it from a text's own evidence (the newest dialect consistent with what the text
shows), and say what that evidence was.

=========  ===========================================================================
since      what changed (first release; commits in the reference's Appendix A)
=========  ===========================================================================
1.3        every address space under a bare header line (``memory``, ``I/O``); trees
           from level 0; access letters ``(prio N, RW)``; disabled subtrees skipped;
           then ``aliases`` and each aliased region under its bare name
2.4        ``address-space:`` / ``memory-region:`` headers, trees from level 1, a blank
           line after each block, disabled regions printed with `` [disabled]``
2.9        type words (``ram``/``rom``/``romd``/``ramd``/``i/o``; aliases always
           ``i/o``); ``-f`` prints one ``address-space (flat view): NAME`` block per AS
2.11       ``-f`` groups ASes by shared FlatView (``FlatView #N``)
4.1        accelerator suffix in ``-f`` (the ``-accel`` string: ``kvm``)
5.0        suffix is the AccelClass name ``KVM``; aliases print their target's word
5.1        disabled regions hidden unless ``-D`` (their children still print: orphans);
           ``[DETECTED OVERFLOW!]`` moved before the indentation
7.0        address spaces with the same root grouped under several headers, hash order
11.0       ``container`` for a region not mapped in a container (upstream 2026)
=========  ===========================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from qmirror.errors import InputError
from qmirror.text.grammar import FLAT_AS_HEADER, FLATVIEW_HEADER, RANGE_INDENT


Version = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Dialect:
    """The format features of one range of QEMU versions.

    :param name: the first QEMU version that prints this way (``"7.0"``).
    :param since: that version as a tuple.
    :param prefixed_headers: ``address-space: NAME`` (else a bare ``NAME`` line).
    :param root_level: indentation level of a block's root line (1, or 0 before 2.4).
    :param blank_lines: a blank line ends each block (2.4+).
    :param access_letters: ``(prio N, RW)`` instead of type words (before 2.9).
    :param alias_target_word: an alias prints its final target's type word (5.0+),
        otherwise ``i/o``.
    :param disabled: ``"skipped"`` (with their subtrees, 1.3–2.3), ``"shown"`` (always,
        2.4–5.0) or ``"hidden"`` (unless ``-D``; their enabled children still print,
        5.1+).
    :param grouped: address spaces sharing a root share one block (7.0+); else one
        block per address space in creation order.
    :param container_word: ``container`` for regions not mapped in a container.
    :param overflow_before_indent: where ``[DETECTED OVERFLOW!] `` goes (5.1+: before).
    :param flat: the ``-f`` layout: ``None`` (no ``-f``), ``"per-as"`` (2.9/2.10) or
        ``"flatview"`` (2.11+).
    :param accel_word: the word ``-f`` appends for an accelerator's slot, if any.
    :param dispatch_region_ends: the ``-d`` dump prints a section's end as its start plus
        its *region's* size, not the section's (QEMU 5.2 does; Debian's 7.2.22 and later
        print the section's). Not tied to a version: found from a dump's own evidence.
    """

    name: str
    since: Version
    prefixed_headers: bool = True
    root_level: int = 1
    blank_lines: bool = True
    access_letters: bool = False
    alias_target_word: bool = True
    disabled: str = "hidden"
    grouped: bool = True
    container_word: bool = False
    overflow_before_indent: bool = True
    flat: str | None = "flatview"
    accel_word: str | None = "KVM"
    dispatch_region_ends: bool = False

    def __str__(self) -> str:
        return f"QEMU {self.name}+ dialect"


# Oldest first. Each entry changes only what its version changed.
_V1_3 = Dialect(
    "1.3",
    (1, 3),
    prefixed_headers=False,
    root_level=0,
    blank_lines=False,
    access_letters=True,
    alias_target_word=False,
    disabled="skipped",
    grouped=False,
    overflow_before_indent=False,
    flat=None,
    accel_word=None,
)
_V2_4 = replace(
    _V1_3,
    name="2.4",
    since=(2, 4),
    prefixed_headers=True,
    root_level=1,
    blank_lines=True,
    disabled="shown",
)
_V2_9 = replace(_V2_4, name="2.9", since=(2, 9), access_letters=False, flat="per-as")
_V2_11 = replace(_V2_9, name="2.11", since=(2, 11), flat="flatview")
_V4_1 = replace(_V2_11, name="4.1", since=(4, 1), accel_word="kvm")
_V5_0 = replace(_V4_1, name="5.0", since=(5, 0), accel_word="KVM", alias_target_word=True)
_V5_1 = replace(_V5_0, name="5.1", since=(5, 1), disabled="hidden", overflow_before_indent=True)
_V7_0 = replace(_V5_1, name="7.0", since=(7, 0), grouped=True)
_V11_0 = replace(_V7_0, name="11.0", since=(11, 0), container_word=True)

DIALECTS: tuple[Dialect, ...] = (_V1_3, _V2_4, _V2_9, _V2_11, _V4_1, _V5_0, _V5_1, _V7_0, _V11_0)
#: What QEMU 7.2 (Debian 12, the reference build) prints.
QEMU_7_2 = _V7_0
DEFAULT = QEMU_7_2


def parse_version(text: str) -> Version:
    """``"7.2"`` or ``"7.2.22"`` → ``(7, 2)``.

    :raise InputError: not a QEMU version.
    """
    m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*", text)
    if m is None:
        raise InputError(f"not a QEMU version (X.Y): {text!r}")
    return int(m[1]), int(m[2])


def for_version(version: Version | str) -> Dialect:
    """The dialect QEMU ``version`` prints.

    :raise InputError: older than 1.3 (the 1.0–1.2 format is not supported).
    """
    v = parse_version(version) if isinstance(version, str) else version
    chosen = None
    for d in DIALECTS:
        if d.since <= v:
            chosen = d
    if chosen is None:
        raise InputError(f"QEMU {v[0]}.{v[1]}: `info mtree` before 1.3 is not supported")
    return chosen


@dataclass(frozen=True, slots=True)
class Detection:
    """A dialect found from a text, and the evidence for it."""

    dialect: Dialect
    evidence: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.dialect} ({'; '.join(self.evidence) or 'no distinguishing evidence'})"


@dataclass(frozen=True, slots=True)
class TreeEvidence:
    """What a tree text shows about its dialect (collected while parsing it)."""

    prefixed_headers: bool = True
    unindented_roots: bool = False
    access_letters: bool = False
    container_word: bool = False
    grouped_headers: bool = False
    late_overflow_marker: bool = False
    target_words: bool = False
    io_alias_to_ram: bool = False
    orphans: bool = False
    repeated_roots: bool = False


def decide_tree(ev: TreeEvidence) -> Detection:
    """The newest dialect consistent with a tree text's evidence.

    Where the text cannot tell two dialects apart they print it identically, so the
    newer one is taken.
    """
    if not ev.prefixed_headers and ev.unindented_roots:
        return Detection(_V1_3, ("bare address-space headers over unindented roots",))
    if ev.access_letters:
        return Detection(_V2_4, ("access letters (RW) instead of type words",))
    if ev.container_word:
        return Detection(_V11_0, ("the `container` type word",))
    if ev.grouped_headers:
        return Detection(_V7_0, ("several address-space headers over one tree",))
    evidence: list[str] = []
    if ev.late_overflow_marker:
        evidence.append("overflow markers after the indentation")
    if ev.target_words:
        evidence.append("aliases print their target's type word")
    elif ev.io_alias_to_ram:
        # Only QEMU before 5.0 prints that; disabled regions were always shown then.
        evidence.append("aliases of RAM print i/o")
        return Detection(_V2_11, tuple(evidence))
    if ev.orphans:
        evidence.append("children of hidden disabled regions (orphans)")
        return Detection(_V5_1, tuple(evidence))
    if ev.repeated_roots:
        evidence.append("one block per address space, roots repeated")
    if ev.late_overflow_marker:
        return Detection(_V5_0 if ev.target_words else _V2_11, tuple(evidence))
    if ev.repeated_roots:
        # Without an alias of RAM or ROM (io_alias_to_ram returned above) 5.1 and 2.11
        # print aliases alike, so the newer is taken: only it hides disabled regions,
        # as QEMU 5.2's plain `info mtree` of aarch64 virt needs (a `memory-region:
        # system` block with no alias shown before it).
        return Detection(_V5_1, tuple(evidence))
    return Detection(_V7_0, tuple(evidence))


def detect_flat(lines: list[str]) -> Detection:
    """The dialect of a ``-f`` text: its header style and accelerator word (and, in
    ``-d`` dumps, how section ends are printed)."""
    found = _detect_flat_layout(lines)
    if _region_sized_section_ends(lines):
        return Detection(
            replace(found.dialect, dispatch_region_ends=True),
            (
                *found.evidence,
                "dispatch sections ending past their FlatRange "
                "(ends printed from the region's size)",
            ),
        )
    return found


def _detect_flat_layout(lines: list[str]) -> Detection:
    if any(ln.startswith(FLAT_AS_HEADER) for ln in lines):
        return Detection(_V2_9, ("`address-space (flat view):` headers",))
    if any(re.search(r" kvm$", ln) for ln in lines if ln.startswith(RANGE_INDENT)):
        return Detection(_V4_1, ("lower-case `kvm` accelerator word",))
    if any(", container): " in ln for ln in lines):
        return Detection(_V11_0, ("the `container` type word",))
    return Detection(DEFAULT, ())


_SECTION_LINE = re.compile(r"      #[1-9]\d* @([0-9a-f]{16})\.\.([0-9a-f]{16}) (.)")
_RANGE_LINE = re.compile(r"  ([0-9a-f]{16})-([0-9a-f]{16}) ")


def _region_sized_section_ends(lines: list[str]) -> bool:
    """Whether a dump shows a named section reaching past the FlatRange it belongs to.

    Sections are pieces of the FlatView's ranges (only subpage containers, ``(noname)``,
    are not), so printed with their own sizes they end inside the range they start in.
    """
    ranges: list[tuple[int, int]] = []
    for ln in lines:
        if ln.startswith(FLATVIEW_HEADER):
            ranges = []
            continue
        r = _RANGE_LINE.match(ln)
        if r is not None:
            ranges.append((int(r[1], 16), int(r[2], 16)))
            continue
        m = _SECTION_LINE.match(ln)
        if m is None or ln[m.start(3) :].startswith("(noname)"):
            continue
        start, end = int(m[1], 16), int(m[2], 16)
        if any(lo <= start <= hi < end for lo, hi in ranges):
            return True
    return False
