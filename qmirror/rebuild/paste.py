"""What a paste lacked or left out, marked in the model rebuilt from it.

The forgiving reader (:mod:`qmirror.text.forgiving`) writes in the lines a fragment
lacks — an ``address-space:`` header, a root line, the ``memory-region:`` block of an
alias target — and keeps the lines an author left out as elision markers
(:class:`~qmirror.text.pastetree.Section`). The model says so too, as facts of gap
:data:`PASTE_GAP` (so they show wherever facts do: ``check``'s report and JSON):

* a region only an implied line stands for: ``line = implied``;
* an address space whose header was implied: a machine fact
  ``address-space header = implied``;
* a region some of whose subregions were elided: ``subregions = the shown ones
  only`` — the model has only what the paste shows there.

Part of :func:`qmirror.rebuild.tree.build_machine`.
"""

from __future__ import annotations

from qmirror.core.model import Fact, Machine, MemoryRegion, Source
from qmirror.rebuild.occurrences import Occ
from qmirror.text.grammar import AS_HEADER
from qmirror.text.tree import TreeDocument


#: The ``gap`` of the facts this module records (not one of the text gaps G1–G9: what
#: the paste, not QEMU's printer, left out).
PASTE_GAP = "paste"


def mark_paste(doc: TreeDocument, roots: list[Occ], machine: Machine) -> None:
    """Record the implied lines and the elisions of ``doc``'s paste (if it is one) as
    facts of the regions built from it (each kept on its representative occurrence)."""
    sec = doc.paste
    if sec is None or not sec.partial:
        return
    by_line: dict[int, Occ] = {}
    for root in roots:
        for occ in root.walk():
            if occ.line is not None:
                by_line[occ.line.lineno] = occ
    for i in sorted(sec.implied):
        lineno, text = i + 1, sec.lines[i]
        at = f"line {sec.origin[i]} of the paste"
        if text.startswith(AS_HEADER):
            machine.facts.append(
                Fact(
                    PASTE_GAP,
                    "address-space header",
                    "implied",
                    Source.DEFAULT,
                    f"{text!r}: the paste has no header for the lines at {at}",
                )
            )
            continue
        line_occ = by_line.get(lineno)
        if line_occ is None or line_occ.find() is not line_occ:
            # A header, or a line that repeats a region the paste does show.
            continue
        mr = line_occ.mr
        if mr is None:
            continue
        mr.set_fact(
            Fact(
                PASTE_GAP,
                "line",
                "implied",
                Source.DEFAULT,
                f"the paste has no line for this region (at {at}): written in so that "
                "the text reads",
            )
        )
    for i, elision in sec.elisions:
        mr = _elided_in(doc, roots, by_line, i, elision.indent // 2)
        if mr is None or mr.fact("subregions") is not None:
            continue
        mr.set_fact(
            Fact(
                PASTE_GAP,
                "subregions",
                "the shown ones only",
                Source.DEFAULT,
                f"the paste elides some at line {elision.line} "
                f"({elision.marker().strip()!r}): the model has only the regions it shows",
            )
        )


def _elided_in(
    doc: TreeDocument,
    roots: list[Occ],
    by_line: dict[int, Occ],
    i: int,
    level: int,
) -> MemoryRegion | None:
    """The region whose subregions an elision before section line ``i`` stands for:
    the nearest line above it, in its block, less deep than the elided lines (the
    block's root when there is none)."""
    starts = [b.header_lineno for b in doc.blocks]
    k = max((j for j, st in enumerate(starts) if st <= i), default=None)
    if k is None:
        return None
    for lineno in range(i, starts[k], -1) if level > 1 else ():
        occ = by_line.get(lineno)
        if occ is not None and occ.line is not None and occ.line.level < level:
            return occ.find().mr
    return roots[k].find().mr
