"""Alias targets from the printing order: QEMU's printer walk replayed over the
occurrences (:mod:`qmirror.rebuild.occurrences`), binding every alias to the
``memory-region:`` block of its target, with stand-ins for hidden aliases.

Part of :func:`qmirror.rebuild.tree.build_machine`.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from itertools import accumulate

from qmirror.core.model import MASK64, Ownership
from qmirror.rebuild.occurrences import Occ, insert_hidden, subtree_lines
from qmirror.text.grammar import TreeLine
from qmirror.text.tree import TreeDocument


#: How well a block fits as an alias's target, best first (see ``_Replay._fit``).
_FitT = tuple[bool, bool, bool, bool, bool]
_NO_FIT: _FitT = (False, False, False, False, False)
#: What a block's fit owes to the block alone: whether its region is an alias, its
#: type word, its owner and its printed content relative to its start (``None``: a
#: hidden region, no line).
_Sig = tuple[bool, str, Ownership | None, tuple[tuple[int, int], ...]] | None


class _Group:
    """The queued blocks of one name that fit any alias alike but for the cycle
    test and the alias's name (same signature), in queue order."""

    __slots__ = ("ends", "members", "skip", "stale", "starts")

    def __init__(self, sig: _Sig) -> None:
        self.members: list[int] = []
        #: Per alias name, each member bound by such an alias -> the member below it
        #: to try next (path-compressed), so fresh members are found in few steps.
        self.skip: dict[str, dict[int, int]] = {}
        #: Per alias name, the positions of the members bound by such an alias.
        self.stale: dict[str, list[int]] = {}
        # The content sorted by start, with the running maximum of the ends: whether
        # anything lies inside a window is one bisection.
        content = sorted(sig[3]) if sig is not None else []
        self.starts = [start for start, _ in content]
        self.ends = list(accumulate((end for _, end in content), max))

    def inside(self, lo: int, hi: int) -> bool:
        k = bisect_right(self.starts, hi)
        return k > 0 and self.ends[k - 1] >= lo

    def mark(self, alias_name: str, at: int) -> None:
        """An alias named ``alias_name`` is now bound to member ``at``."""
        self.skip.setdefault(alias_name, {})[at] = at - 1
        insort(self.stale.setdefault(alias_name, []), at)

    def fresh(self, alias_name: str, below: int) -> int:
        """The highest position ``<= below`` of a member not bound by such a name, or -1."""
        skip = self.skip.get(alias_name)
        if not skip:
            return below
        at = below
        path = []
        while at in skip:
            path.append(at)
            at = skip[at]
        for p in path:
            skip[p] = at
        return at


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
        self.seen: set[Occ] = set()  # rep occurrences already walked
        self.pos = 0  # walk position
        self.last_enqueue = -1
        self.last_fresh: tuple[Occ, int] | None = None
        #: Names of the aliases bound to each target block so far.
        self.bound_names: dict[int, set[str]] = {}
        #: For each block root, the nearest roots above the aliases (and hidden
        #: stand-ins) bound to it so far.
        self.preds: dict[Occ, set[Occ]] = {}
        #: ``_reachers`` by the nearest root above the alias.
        self.reach_cache: dict[Occ | None, set[Occ]] = {}
        #: Queued blocks by name, then by signature.
        self.groups: dict[str, dict[_Sig, _Group]] = {}
        #: Each queued block's group and position in it.
        self.group_of: dict[int, tuple[_Group, int]] = {}
        self.sig_of: dict[int, _Sig] = {}
        self.block_roots = {roots[bi].find() for bi in self.region_blocks}
        #: Memo of ``_root_above``.
        self.root_above: dict[Occ, Occ | None] = {}

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
            fresh = rep not in self.seen
            self.seen.add(rep)
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
        sig = self._sig(bi)
        groups = self.groups.setdefault(self._name(bi), {})
        group = groups.get(sig)
        if group is None:
            group = groups[sig] = _Group(sig)
        self.group_of[bi] = (group, len(group.members))
        group.members.append(bi)
        self.last_enqueue = self.pos

    def _sig(self, bi: int) -> _Sig:
        if bi not in self.sig_of:
            self.sig_of[bi] = self._signature(bi)
        return self.sig_of[bi]

    def _bind(self, occ: Occ, rep: Occ, fresh: bool) -> None:
        line = occ.line
        assert line is not None and line.alias_target is not None
        name = line.alias_target
        nxt = len(self.queue)
        queued = self.queued_by_name.get(name, [])
        new = self.region_blocks[nxt] if nxt < len(self.region_blocks) else None
        if new is not None and self._name(new) != name:
            new = None
        count = len(queued) + (new is not None)
        if count == 1:
            best = new if new is not None else queued[0]
            if best == new:
                self._claim(best)
            self._bound(rep, best, line.name)
            return
        if count:
            # With -o the owner usually decides alone (a bridge's window and its own
            # bus): try that before the full comparison.
            reach = self._reachers(rep)
            by_owner = self._by_owner(new, line, reach)
            if by_owner is not None:
                best, fit = by_owner, self._fit(by_owner, line, reach)
            else:
                best, fit = self._best(name, new, line, reach)
            rep.target_choice = (count, (fit[2], fit[4]))
            if best == new:
                self._claim(best)
            self._bound(rep, best, line.name)
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
        self._bound(rep, self.region_blocks[later], line.name)

    def _bound(self, rep: Occ, bi: int, alias_name: str) -> None:
        rep.target_block = bi
        names = self.bound_names.setdefault(bi, set())
        if alias_name not in names:
            names.add(alias_name)
            group, at = self.group_of[bi]
            group.mark(alias_name, at)
        self._link(rep, bi)

    def _by_owner(self, new: int | None, alias: TreeLine, reach: set[Occ]) -> int | None:
        """The one candidate with the alias's owner and its type word, if exactly one
        (``new``: the next block to queue, when it is a candidate)."""
        if alias.ownership is None or alias.alias_target is None:
            return None
        owned = self.queued_by_owner.get((alias.alias_target, alias.ownership), [])
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
        if len(same) == 1 and self.roots[same[0]].find() not in reach:
            return same[0]
        return None

    def _best(
        self, name: str, new: int | None, alias: TreeLine, reach: set[Occ]
    ) -> tuple[int, _FitT]:
        """The candidate ``max`` would pick by ``(_fit, queue position)`` (ties go to
        what is already queued, newest first; the new block counts as position -1),
        found without scoring every queued block of that name.

        Queued blocks of one name are grouped by what their fit owes to the block alone
        (type word, owner, printed content): within a group, the fit varies only with
        the cycle test and whether a same-named alias is bound there already, so the
        group's best is its newest block passing both, or else its newest passing the
        cycle test. A block failing the cycle test scores all-false.
        """
        best: tuple[_FitT, int] | None = None
        best_bi = -1
        if new is not None:
            best, best_bi = (self._fit(new, alias, reach), -1), new
        for sig, group in self.groups.get(name, {}).items():
            type_ok, owner_ok, _ = self._sig_fit(sig, alias, content=False)
            inside = group.inside(alias.alias_start, alias.alias_end)
            members = group.members
            fit: _FitT = (True, type_ok, owner_ok, True, inside)
            if best is None or best[0] <= fit:
                at = group.fresh(alias.name, len(members) - 1)
                while at >= 0 and self.roots[members[at]].find() in reach:
                    at = group.fresh(alias.name, at - 1)
                if at >= 0 and (best is None or (fit, self.queue_pos[members[at]]) > best):
                    best, best_bi = (fit, self.queue_pos[members[at]]), members[at]
            fit = (True, type_ok, owner_ok, False, inside)
            if best is None or best[0] <= fit:
                for at in reversed(group.stale.get(alias.name, ())):
                    if self.roots[members[at]].find() not in reach:
                        if best is None or (fit, self.queue_pos[members[at]]) > best:
                            best, best_bi = (fit, self.queue_pos[members[at]]), members[at]
                        break
        if best is None or not best[0][0]:
            # Every candidate closes a loop: all score alike, the newest queued wins.
            queued = self.queued_by_name.get(name, [])
            best_bi = queued[-1] if queued else best_bi
            return best_bi, _NO_FIT
        return best_bi, best[0]

    def _reachers(self, alias: Occ) -> set[Occ]:
        """The block roots that reach ``alias``: through subregions and the aliases
        bound so far they get to a region that contains the alias, so binding one of
        them as its target would close a loop.

        The occurrences that stand for regions form a forest, and a walk from a block
        root only enters other trees at block roots (alias targets); so a root reaches
        the alias exactly when, following bound aliases, it gets to a block root that
        is an ancestor of the alias. Found backwards from those ancestors, through the
        roots above the aliases bound to each, and kept per nearest root above the
        alias: a binding only ever adds to these sets (see :meth:`_link`).
        """
        key = self._root_above(alias)
        found = self.reach_cache.get(key)
        if found is None:
            found = set()
            self._spread(found, key)
            self.reach_cache[key] = found
        return found

    def _spread(self, found: set[Occ], top: Occ | None) -> None:
        """Add ``top``, the roots above it and everything reaching them to ``found``."""
        stack = [top]
        while stack:
            top = stack.pop()
            while top is not None and top not in found:
                found.add(top)
                stack.extend(self.preds.get(top, ()))
                top = self._root_above(top.parent)

    def _link(self, source: Occ, bi: int) -> None:
        """``source`` (an alias or a hidden stand-in) now targets block ``bi``: the
        nearest root above it reaches that block's root."""
        src = self._root_above(source)
        if src is None:
            return
        dst = self.roots[bi].find()
        preds = self.preds.setdefault(dst, set())
        if src in preds:
            return
        preds.add(src)
        for found in self.reach_cache.values():
            if dst in found and src not in found:
                self._spread(found, src)

    def _root_above(self, node: Occ | None) -> Occ | None:
        """The nearest block root at or above ``node`` (``None`` above the top)."""
        path: list[Occ] = []
        cache = self.root_above
        found: Occ | None = None
        while node is not None:
            node = node.find()
            if node in cache:
                found = cache[node]
                break
            path.append(node)
            if node in self.block_roots:
                found = node
                break
            node = node.parent
        for n in path:
            cache[n] = found
        return found

    def _signature(self, bi: int) -> _Sig:
        """What block ``bi``'s fit owes to the block alone (see :meth:`_fit`)."""
        target = self.roots[bi].find()
        tline = target.line
        if tline is None:
            return None
        block = self.doc.blocks[target.block]
        base = tline.start
        content = tuple(
            ((ln.start - base) & MASK64, (ln.end - base) & MASK64)
            for ln in subtree_lines(block, target)[1:]
        )
        return (tline.alias_target is not None, tline.type_word, tline.ownership, content)

    def _sig_fit(
        self, sig: _Sig, alias: TreeLine, *, content: bool = True
    ) -> tuple[bool, bool, bool]:
        """Type word agrees, same owner, something inside the alias window (when
        ``content``; else False)."""
        if sig is None:
            return (True, False, False)
        is_alias, type_word, ownership, lines = sig
        type_ok = not self.doc.dialect.alias_target_word or is_alias or type_word == alias.type_word
        owner_ok = alias.ownership is not None and alias.ownership == ownership
        lo, hi = alias.alias_start, alias.alias_end
        inside = content and any(lo <= end and start <= hi for start, end in lines)
        return (type_ok, owner_ok, inside)

    def _fit(self, bi: int, alias: TreeLine, reach: set[Occ]) -> _FitT:
        """How well block ``bi``'s region fits as the target of ``alias`` (G5).

        In order: a region that reaches the alias cannot be its target (QEMU would
        render it forever); the type word must agree (an alias prints its final
        target's); the same owner (``-o``); no same-named alias bound to it yet (a
        device has one ``pci_bridge_mem``: a second one belongs to another device and
        its own target); something inside the alias window.
        """
        if self.roots[bi].find() in reach:
            return _NO_FIT
        fresh_name = alias.name not in self.bound_names.get(bi, ())
        type_ok, owner_ok, inside = self._sig_fit(self._sig(bi), alias)
        return (True, type_ok, owner_ok, fresh_name, inside)

    def _stand_in(self, upto: int, before: Occ | None) -> None:
        """Queue the blocks ``len(queue) .. upto-1`` through hidden aliases placed
        just before ``before`` (a fresh occurrence), or just after the last fresh one."""
        doc = self.doc
        for k in range(len(self.queue), upto):
            bi = self.region_blocks[k]
            if doc.shows_disabled or doc.dialect.disabled == "shown":
                raise doc.error(
                    f"'memory-region: {self._name(bi)}' is not the target of any alias "
                    "printed before it, although this text shows disabled regions",
                    doc.blocks[bi].header_lineno,
                )
            if before is not None and before.parent is not None:
                parent = before.parent.find()
                mine = before.find()
                stand_in = insert_hidden(parent, parent.children.index(mine), mine, target_block=bi)
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
                raise doc.error(
                    f"'memory-region: {self._name(bi)}' comes earlier than any printing of "
                    "this tree could queue it",
                    doc.blocks[bi].header_lineno,
                )
            self._link(stand_in, bi)
            self._claim(bi)


def resolve_aliases(doc: TreeDocument, roots: list[Occ]) -> None:
    _Replay(doc, roots).run()
