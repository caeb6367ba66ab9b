"""Alias targets from the printing order: QEMU's printer walk replayed over the
occurrences (:mod:`qmirror.rebuild.occurrences`), binding every alias to the
``memory-region:`` block of its target, with stand-ins for hidden aliases.

Part of :func:`qmirror.rebuild.tree.build_machine`.
"""

from __future__ import annotations

from collections.abc import Callable

from qmirror.core.model import MASK64
from qmirror.errors import ParseError
from qmirror.rebuild.occurrences import Occ, insert_hidden, subtree_lines
from qmirror.text.grammar import TreeLine
from qmirror.text.tree import TreeDocument


class _Replay:
    """QEMU's walk over the printed regions, binding aliases to ``memory-region:`` blocks.

    Blocks are queued in the order the printer first meets each target (by
    identity). Walking the occurrences in the same order, an alias whose target name
    matches the next unclaimed block claims it, unless an already queued region of
    that name fits better (type word, owner). A block that nothing visible claims in
    time was queued by a hidden (disabled) alias: a synthetic stand-in goes where
    QEMU must have met it.
    """

    def __init__(self, doc: TreeDocument, roots: list[Occ]) -> None:
        self.doc = doc
        self.roots = roots
        self.region_blocks = [i for i, b in enumerate(doc.blocks) if b.is_region_block]
        #: Position of each memory-region block among them.
        self.rank = {bi: k for k, bi in enumerate(self.region_blocks)}
        self.queue: list[int] = []  # claimed block indexes, in queue order
        self.queued_by_name: dict[str, list[int]] = {}
        self.queued_by_owner: dict[tuple[str, object], list[int]] = {}
        self.queue_pos: dict[int, int] = {}
        self.seen: set[int] = set()  # ids of rep occurrences already walked
        self.pos = 0  # walk position
        self.last_enqueue = -1
        self.last_fresh: tuple[Occ, int] | None = None
        #: Names of the aliases bound to each target block so far.
        self.bound_names: dict[int, set[str]] = {}

    def run(self) -> None:
        for bi, (block, root) in enumerate(zip(self.doc.blocks, self.roots, strict=True)):
            if block.is_region_block:
                k = self.rank[bi]
                if k >= len(self.queue):
                    self._stand_in(k + 1, None)
            self._walk(root)

    def _name(self, bi: int) -> str:
        return self.doc.blocks[bi].names[0]

    def _walk(self, root: Occ) -> None:
        for occ in root.walk():
            rep = occ.find()
            fresh = id(rep) not in self.seen
            self.seen.add(id(rep))
            self.pos += 1
            if (
                occ.line is not None
                and occ.line.alias_target is not None
                and rep.target_block is None
            ):
                self._bind(occ, rep, fresh)
            if fresh:
                self.last_fresh = (occ, self.pos)

    def _claim(self, bi: int) -> None:
        self.queue_pos[bi] = len(self.queue)
        self.queue.append(bi)
        self.queued_by_name.setdefault(self._name(bi), []).append(bi)
        target = self.roots[bi].find().line
        if target is not None and target.ownership is not None:
            self.queued_by_owner.setdefault((self._name(bi), target.ownership), []).append(bi)
        self.last_enqueue = self.pos

    def _bind(self, occ: Occ, rep: Occ, fresh: bool) -> None:
        line = occ.line
        assert line is not None and line.alias_target is not None
        name = line.alias_target
        nxt = len(self.queue)
        cands = list(self.queued_by_name.get(name, ()))
        new = self.region_blocks[nxt] if nxt < len(self.region_blocks) else None
        if new is not None and self._name(new) == name:
            cands.append(new)
        if len(cands) == 1:
            best = cands[0]
            if best == new:
                self._claim(new)
            rep.target_block = best
            self.bound_names.setdefault(best, set()).add(line.name)
            return
        if cands:
            # With -o the owner usually decides alone (a bridge's window and its own
            # bus): try that before the full comparison, which walks subtrees.
            by_owner = self._by_owner(cands, line, rep)
            # Otherwise ties go to what is already queued, newest first: a new block is
            # taken only when it fits better (see _fit).
            reaches = self._reaches(rep)
            best = (
                by_owner
                if by_owner is not None
                else max(
                    cands, key=lambda bi: (self._fit(bi, line, reaches), self.queue_pos.get(bi, -1))
                )
            )
            fit = self._fit(best, line, reaches)
            rep.target_choice = (len(cands), (fit[2], fit[4]))
            if best == new:
                self._claim(new)
            rep.target_block = best
            self.bound_names.setdefault(best, set()).add(line.name)
            return
        later = next(
            (
                k
                for k in range(nxt + 1, len(self.region_blocks))
                if self._name(self.region_blocks[k]) == name
            ),
            None,
        )
        if later is None:
            raise self.doc.error(
                f"alias target {name!r} has no 'memory-region: {name}' block that could be its own",
                line.lineno,
                f"@{name} ",
            )
        self._stand_in(later, occ if fresh else None)
        self._claim(self.region_blocks[later])
        rep.target_block = self.region_blocks[later]
        self.bound_names.setdefault(rep.target_block, set()).add(line.name)

    def _by_owner(self, cands: list[int], alias: TreeLine, rep: Occ) -> int | None:
        """The one candidate with the alias's owner and its type word, if exactly one."""
        if alias.ownership is None or alias.alias_target is None:
            return None
        owned = self.queued_by_owner.get((alias.alias_target, alias.ownership), [])
        new = cands[-1] if cands and cands[-1] not in self.queue_pos else None
        if (
            new is not None
            and (t := self.roots[new].find().line) is not None
            and t.ownership == alias.ownership
        ):
            owned = [*owned, new]
        same = [
            bi
            for bi in owned
            if (t := self.roots[bi].find().line) is not None
            and (
                not self.doc.dialect.alias_target_word
                or t.alias_target is not None
                or t.type_word == alias.type_word
            )
        ]
        if len(same) == 1 and not self._reaches(rep)(self.roots[same[0]].find()):
            return same[0]
        return None

    def _reaches(self, alias: Occ) -> Callable[[Occ], bool]:
        """A test of whether a candidate target reaches ``alias``: through subregions
        and the aliases bound so far, it gets to a region that contains the alias, so
        binding it would close a loop. The candidates of one alias share one walk:
        what a finished walk visited cannot reach the alias, whatever the start."""
        ancestors: set[Occ] = {alias}
        up = alias.parent
        while up is not None:
            up = up.find()
            ancestors.add(up)
            up = up.parent
        clear: set[Occ] = set()

        def reaches(target: Occ) -> bool:
            seen: set[Occ] = set()
            stack = [target]
            while stack:
                o = stack.pop().find()
                if o in seen or o in clear:
                    continue
                if o in ancestors:
                    return True
                seen.add(o)
                stack.extend(o.children)
                if o.target_block is not None:
                    stack.append(self.roots[o.target_block])
            clear.update(seen)
            return False

        return reaches

    def _fit(
        self, bi: int, alias: TreeLine, reaches: Callable[[Occ], bool]
    ) -> tuple[bool, bool, bool, bool, bool]:
        """How well block ``bi``'s region fits as the target of ``alias`` (G5).

        In order: a region that reaches the alias cannot be its target (QEMU would
        render it forever); the type word must agree (an alias prints its final
        target's); the same owner (``-o``); no same-named alias bound to it yet (a
        device has one ``pci_bridge_mem``: a second one belongs to another device and
        its own target); something inside the alias window.
        """
        target = self.roots[bi].find()
        if reaches(target):
            return (False, False, False, False, False)
        fresh_name = alias.name not in self.bound_names.get(bi, ())
        tline = target.line
        if tline is None:
            return (True, True, False, fresh_name, False)
        type_ok = (
            not self.doc.dialect.alias_target_word
            or tline.alias_target is not None
            or tline.type_word == alias.type_word
        )
        owner_ok = alias.ownership is not None and alias.ownership == tline.ownership
        block = self.doc.blocks[target.block]
        lines = subtree_lines(block, target)[1:]
        base = tline.start
        lo, hi = alias.alias_start, alias.alias_end
        inside = any(
            lo <= ((ln.end - base) & MASK64) and ((ln.start - base) & MASK64) <= hi for ln in lines
        )
        return (True, type_ok, owner_ok, fresh_name, inside)

    def _stand_in(self, upto: int, before: Occ | None) -> None:
        """Queue the blocks ``len(queue) .. upto-1`` through hidden aliases placed
        just before ``before`` (a fresh occurrence), or just after the last fresh one."""
        doc = self.doc
        for k in range(len(self.queue), upto):
            bi = self.region_blocks[k]
            if doc.shows_disabled or doc.dialect.disabled == "shown":
                raise ParseError(
                    f"'memory-region: {self._name(bi)}' is not the target of any alias "
                    "printed before it, although this text shows disabled regions",
                    line=doc.blocks[bi].header_lineno,
                    column=1,
                )
            if before is not None and before.parent is not None:
                parent = before.parent.find()
                mine = before.find()
                insert_hidden(parent, parent.children.index(mine), mine, target_block=bi)
            elif self.last_fresh is not None and self.last_fresh[1] >= self.last_enqueue:
                # Anything met after the last enqueue is a valid place, the last stand-in
                # included: consecutive hidden aliases go one after the other.
                anchor = self.last_fresh[0].find()
                if anchor.parent is not None:
                    parent = anchor.parent.find()
                    at = parent.children.index(anchor) + 1
                    stand_in = insert_hidden(parent, at, anchor, target_block=bi)
                else:
                    stand_in = insert_hidden(anchor, len(anchor.children), None, target_block=bi)
                self.last_fresh = (stand_in, self.pos)
            else:
                raise ParseError(
                    f"'memory-region: {self._name(bi)}' comes earlier than any printing of "
                    "this tree could queue it",
                    line=doc.blocks[bi].header_lineno,
                    column=1,
                )
            self._claim(bi)


def resolve_aliases(doc: TreeDocument, roots: list[Occ]) -> None:
    _Replay(doc, roots).run()
