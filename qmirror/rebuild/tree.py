"""Tree text to model: :func:`build_machine` rebuilds the regions of a parsed tree text.

The document (:mod:`qmirror.text.tree`) is the text's structure; here the text's quirks
matter (reference §4.4):

* **One printed line is one *occurrence* of a region, not a region.** A region
  that is both mapped and an alias target (``pci``, ``system``) is printed once in
  its tree and again, in full, in its ``memory-region:`` block. Block roots are
  unified with the occurrence they repeat: same name, same relative subtree, and
  the block's start equal to the region's ``addr`` in its container.
* **Hidden parents.** Without ``-D`` a disabled region's line is skipped but its
  enabled children still print at their real depth. A jump of more than one level
  means hidden ancestors; we stand in a disabled *synthetic* region for them (they
  never render, and they print nothing without ``-D``).
* **Alias targets are names.** ``memory-region:`` blocks come out in the order
  QEMU's printer first met each alias target (by identity). Replaying that walk
  over the printed lines says which block, i.e. which region, every alias means,
  even when names repeat. A block that no visible alias explains was queued by a
  hidden (disabled) alias: we stand in a disabled synthetic alias at the point of
  the walk where QEMU must have met it, so the printer reproduces the block order.
"""

from __future__ import annotations

from qmirror.core.bulk import gc_paused
from qmirror.core.model import MASK64, AddressSpace, Fact, Machine, MemoryRegion, RegionKind, Source
from qmirror.errors import ParseError
from qmirror.text.grammar import ACCESS_LETTERS, TreeLine, hex16, last
from qmirror.text.repair import remap_error
from qmirror.text.tree import KIND_OF_WORD, TreeBlock, TreeDocument


# -- rebuilding the model ---------------------------------------------------------------


class _Occ:
    """One occurrence of a region in the text: a printed line, or a hidden stand-in."""

    __slots__ = ("block", "children", "index", "line", "markers", "name", "parent", "priority",
                 "rep", "size", "start", "target_block", "target_choice")

    def __init__(self, line: TreeLine | None, parent: _Occ | None, block: int) -> None:
        self.line = line
        self.parent = parent
        self.block = block
        self.children: list[_Occ] = []
        self.rep: _Occ = self
        self.index = -1  # position of the line in its block; -1 for stand-ins
        self.name: str | None = line.name if line is not None else None
        self.start = line.start if line is not None else 0
        self.size = _size_of(line) if line is not None else 1
        self.priority = line.priority if line is not None else 0
        #: For an alias: the block whose region is its target.
        self.target_block: int | None = None
        #: For a stand-in: overflow markers it prints although hidden.
        self.markers = 0
        #: For an alias: (candidates for its target, (same owner, content in window)).
        self.target_choice: tuple[int, tuple[bool, bool]] | None = None

    def find(self) -> _Occ:
        o = self
        while o.rep is not o:
            o = o.rep
        return o

    def walk(self) -> list[_Occ]:
        """This occurrence and its descendants in printing order (a new list)."""
        out: list[_Occ] = []
        add = out.append
        stack = [self]
        pop, push = stack.pop, stack.extend
        while stack:
            o = pop()
            add(o)
            if o.children:  # most are leaves: skip the call
                push(reversed(o.children))
        return out


def _size_of(line: TreeLine) -> int:
    return ((line.end - line.start) & MASK64) + 1


def _build_block(block: TreeBlock, bi: int) -> _Occ:
    """Turn a block's lines into an occurrence tree, standing in for hidden ancestors."""
    root: _Occ | None = None
    stack: list[_Occ] = []
    for idx, line in enumerate(block.lines):
        occ = _Occ(line, None, bi)
        occ.index = idx
        if root is None:
            if line.level == 1:
                root = occ
                stack = [occ]
                continue
            root = _hidden_root(block, bi)
            stack = [root]
        elif line.level == 1:
            raise ParseError("a second level-1 line in one block: a block prints one region",
                             line=line.lineno, column=3)
        del stack[line.level - 1:]
        while len(stack) < line.level - 1:
            hidden = _Occ(None, stack[-1], bi)
            stack[-1].children.append(hidden)
            stack.append(hidden)
        occ.parent = stack[-1]
        stack[-1].children.append(occ)
        stack.append(occ)
    if root is None:
        # Only headers: the root is hidden and has no visible descendants.
        root = _hidden_root(block, bi)
    _place_stand_ins(root)
    return root


def _hidden_root(block: TreeBlock, bi: int) -> _Occ:
    root = _Occ(None, None, bi)
    root.name = block.names[0] if block.is_region_block else None
    return root


def _place_stand_ins(root: _Occ) -> None:
    """Choose start, size and priority for hidden stand-ins so the printer puts their
    visible descendants back exactly where QEMU printed them."""
    order = root.walk()
    # Bottom-up: a stand-in starts at its first descendant and spans them all.
    for occ in reversed(order):
        if occ.line is not None or not occ.children:
            continue
        lo = min(c.start for c in occ.children)
        hi = max(c.start + c.size - 1 for c in occ.children)
        occ.start = lo
        occ.size = max(1, hi - lo + 1)
    # Top-down: keep each stand-in between its printed neighbours in the sort.
    for occ in order:
        kids = occ.children
        for i, kid in enumerate(kids):
            if kid.line is not None:
                continue
            prev = next((k for k in reversed(kids[:i]) if k.line is not None), None)
            nxt = next((k for k in kids[i + 1:] if k.line is not None), None)
            if nxt is not None and kid.start > nxt.start:
                kid.start = nxt.start
            if prev is not None and kid.start < prev.start:
                kid.start = prev.start
            if prev is not None and kid.start == prev.start:
                kid.priority = prev.priority
            elif nxt is not None and kid.start == nxt.start:
                kid.priority = nxt.priority
    # Reliability fix (issue 6): a stand-in must not wrap past 2**64, or the printer
    # would emit a `[DETECTED OVERFLOW!]` for it that QEMU never printed.
    for occ in order:
        if occ.line is None:
            occ.size = max(1, min(occ.size, (1 << 64) - occ.start))


def _insert_hidden(parent: _Occ, at: int, like: _Occ | None, *, markers: int = 0,
                   target_block: int | None = None) -> _Occ:
    """Insert a hidden stand-in into ``parent``'s printed children at index ``at``.

    It takes the address and priority of ``like`` (the neighbour it goes next to) so
    the printer's stable sort keeps it exactly there.
    """
    occ = _Occ(None, parent, parent.block)
    if like is not None:
        occ.start, occ.priority = like.start, like.priority
    elif parent.children:
        tail = parent.children[-1]
        occ.start, occ.priority = tail.start, tail.priority
    else:
        occ.start = parent.start
    occ.markers = markers
    occ.target_block = target_block
    parent.children.insert(at, occ)
    return occ


def _subtree_lines(block: TreeBlock, occ: _Occ) -> list[TreeLine]:
    """The printed lines of ``occ``'s subtree (contiguous in the block)."""
    lines = block.lines
    i = occ.index
    level = lines[i].level
    j = i + 1
    while j < len(lines) and lines[j].level > level:
        j += 1
    return lines[i:j]


def _same_shape(a: list[TreeLine], b: list[TreeLine]) -> bool:
    """Whether two printings show the same subtree (up to where it is placed)."""
    if len(a) != len(b):
        return False
    a0, b0 = a[0], b[0]
    for x, y in zip(a, b, strict=True):
        if (x.tail != y.tail or x.level - a0.level != y.level - b0.level
                or (x.start - a0.start) & MASK64 != (y.start - b0.start) & MASK64
                or (x.end - a0.start) & MASK64 != (y.end - b0.start) & MASK64):
            return False
    return True


def _union(dup: _Occ, rep: _Occ) -> None:
    """Make ``dup``'s subtree the same regions as ``rep``'s (they print alike)."""
    dups, reps = dup.walk(), rep.walk()
    if [o.line is None for o in dups] != [o.line is None for o in reps]:
        # Reliability fix (issue 6): the printed lines agree but the hidden regions
        # between them do not (a hidden region's overflow marker glued to a block's
        # closing line, say): pairing them would mix two trees (a ValueError later).
        # Keep the two printings apart; both still print back as they were.
        return
    for d, r in zip(dups, reps, strict=True):
        d.rep = r.find()


def build_machine(doc: TreeDocument) -> Machine:
    """Rebuild the regions and address spaces a tree-mode text describes.

    Attributes the text does not carry get documented defaults here (recorded in
    each region's :attr:`~qmirror.core.model.MemoryRegion.facts`); :mod:`qmirror.rebuild.gaps`
    may then improve them from rules and evidence.

    :raise ParseError: when the text contradicts itself (an alias whose target has
        no block, blocks in an order no printing could produce).
    """
    try:
        with gc_paused():
            roots = [_build_block(b, i) for i, b in enumerate(doc.blocks)]
            for block, root in zip(doc.blocks, roots, strict=True):
                _attribute_overflow(block, root)
            _unify(doc, roots)
            _resolve_aliases(doc, roots)
            return _make_machine(doc, roots)
    except ParseError as err:
        if err.filename is None:
            err.filename = doc.filename
        if not err.source_line and 0 < err.line <= len(doc.lines):
            err.source_line = doc.lines[err.line - 1]
        if doc.origin is not None:
            raise remap_error(err, doc.origin, None) from None
        raise


def _attribute_overflow(block: TreeBlock, root: _Occ) -> None:
    """Markers a line carries beyond its own were printed by hidden regions before it."""
    for occ in root.walk():
        line = occ.line
        if line is None:
            continue
        parent = occ.parent
        base = parent.start if parent is not None else 0
        own = 1 if (line.start < base or line.end < line.start) else 0
        extra = line.overflow - own
        if extra < 0:
            raise ParseError("missing '[DETECTED OVERFLOW!] ': QEMU marks a range that wraps",
                             line=line.lineno, column=1)
        if extra:
            if parent is None:
                raise ParseError("overflow marker before a block's first line: no hidden "
                                 "region can have printed it", line=line.lineno, column=1)
            _insert_hidden(parent, parent.children.index(occ), occ, markers=extra)
    if block.closing_overflow:
        last_occ = root.walk()[-1]
        if last_occ.parent is None:
            _insert_hidden(last_occ, 0, None, markers=block.closing_overflow)
        else:
            siblings = last_occ.parent.children
            _insert_hidden(last_occ.parent, siblings.index(last_occ) + 1, last_occ,
                           markers=block.closing_overflow)


def _unify(doc: TreeDocument, roots: list[_Occ]) -> None:
    """Identify block roots (and AS roots) with the occurrence they repeat."""
    by_name: dict[str, list[_Occ]] = {}
    for root in roots:
        for occ in root.walk():
            if occ.parent is not None and occ.line is not None:
                by_name.setdefault(occ.line.name, []).append(occ)
    # Address-space roots are distinct regions among themselves (QEMU groups them by
    # identity), and so are memory-region blocks (queued by identity); but a block may
    # repeat a region that an AS root also is. So each kind claims candidates apart.
    used_by_roots: set[int] = set()
    used_by_blocks: set[int] = set()

    def nested_match(root: _Occ, used: set[int]) -> _Occ | None:
        assert root.line is not None
        mine = _subtree_lines(doc.blocks[root.block], root)
        for cand in by_name.get(root.line.name, ()):
            parent = cand.parent
            assert parent is not None
            if cand.block == root.block or id(cand.find()) in used:
                continue
            if parent.line is not None and (cand.start - parent.start) & MASK64 != root.start:
                continue
            if _same_shape(mine, _subtree_lines(doc.blocks[cand.block], cand)):
                return cand
        return None

    group_roots = [r for r, b in zip(roots, doc.blocks, strict=True)
                   if not b.is_region_block and r.line is not None]
    if not doc.dialect.grouped:
        # One block per address space (before 7.0): address spaces sharing a root print
        # it again. Same name, place, owner and subtree: the same region.
        firsts: list[_Occ] = []
        for root in group_roots:
            assert root.line is not None
            mine = _subtree_lines(doc.blocks[root.block], root)
            same = next((g for g in firsts
                         if g.line is not None and g.line.name == root.line.name
                         and g.start == root.start and g.line.ownership == root.line.ownership
                         and _same_shape(mine, _subtree_lines(doc.blocks[g.block], g))), None)
            if same is None:
                firsts.append(root)
            else:
                _union(root, same)
        group_roots = firsts
    # An AS root can itself be mapped somewhere (ARM `system` inside `secure-memory`).
    for root in group_roots:
        found = nested_match(root, used_by_roots)
        if found is not None:
            used_by_roots.add(id(found.find()))
            _union(root, found)
    # A candidate serves one block at most (AMD-Vi has one identical `amdvi_root` per
    # device, each its own block).
    roots_by_place: dict[tuple[str, int], list[_Occ]] = {}
    for g in group_roots:
        assert g.line is not None
        roots_by_place.setdefault((g.line.name, g.start), []).append(g)
    for root, block in zip(roots, doc.blocks, strict=True):
        if not block.is_region_block or root.line is None:
            continue
        mine = _subtree_lines(block, root)
        match = next((g for g in roots_by_place.get((root.line.name, root.start), ())
                      if id(g.find()) not in used_by_blocks
                      and _same_shape(mine, _subtree_lines(doc.blocks[g.block], g))), None)
        if match is None:
            match = nested_match(root, used_by_blocks)
        if match is not None:
            used_by_blocks.add(id(match.find()))
            _union(root, match)


class _Replay:
    """QEMU's walk over the printed regions, binding aliases to ``memory-region:`` blocks.

    Blocks are queued in the order the printer first meets each target (by
    identity). Walking the occurrences in the same order, an alias whose target name
    matches the next unclaimed block claims it, unless an already queued region of
    that name fits better (type word, owner). A block that nothing visible claims in
    time was queued by a hidden (disabled) alias: a synthetic stand-in goes where
    QEMU must have met it.
    """

    def __init__(self, doc: TreeDocument, roots: list[_Occ]) -> None:
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
        self.last_fresh: tuple[_Occ, int] | None = None
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

    def _walk(self, root: _Occ) -> None:
        for occ in root.walk():
            rep = occ.find()
            fresh = id(rep) not in self.seen
            self.seen.add(id(rep))
            self.pos += 1
            if occ.line is not None and occ.line.alias_target is not None \
                    and rep.target_block is None:
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

    def _bind(self, occ: _Occ, rep: _Occ, fresh: bool) -> None:
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
            best = by_owner if by_owner is not None else max(
                cands, key=lambda bi: (self._fit(bi, line, rep), self.queue_pos.get(bi, -1)))
            fit = self._fit(best, line, rep)
            rep.target_choice = (len(cands), (fit[2], fit[4]))
            if best == new:
                self._claim(new)
            rep.target_block = best
            self.bound_names.setdefault(best, set()).add(line.name)
            return
        later = next((k for k in range(nxt + 1, len(self.region_blocks))
                      if self._name(self.region_blocks[k]) == name), None)
        if later is None:
            raise self.doc.error(f"alias target {name!r} has no 'memory-region: {name}' block "
                                 "that could be its own", line.lineno, f"@{name} ")
        self._stand_in(later, occ if fresh else None)
        self._claim(self.region_blocks[later])
        rep.target_block = self.region_blocks[later]
        self.bound_names.setdefault(rep.target_block, set()).add(line.name)

    def _by_owner(self, cands: list[int], alias: TreeLine, rep: _Occ) -> int | None:
        """The one candidate with the alias's owner and its type word, if exactly one."""
        if alias.ownership is None or alias.alias_target is None:
            return None
        owned = self.queued_by_owner.get((alias.alias_target, alias.ownership), [])
        new = cands[-1] if cands and cands[-1] not in self.queue_pos else None
        if new is not None and (t := self.roots[new].find().line) is not None \
                and t.ownership == alias.ownership:
            owned = [*owned, new]
        same = [bi for bi in owned
                if (t := self.roots[bi].find().line) is not None
                and (not self.doc.dialect.alias_target_word or t.alias_target is not None
                     or t.type_word == alias.type_word)]
        if len(same) == 1 and not self._would_cycle(self.roots[same[0]].find(), rep):
            return same[0]
        return None

    def _would_cycle(self, target: _Occ, alias: _Occ) -> bool:
        """Whether ``alias`` -> ``target`` closes a loop: the target reaches, through
        subregions and aliases bound so far, a region that contains the alias."""
        ancestors: set[int] = set()
        up = alias.parent
        while up is not None:
            up = up.find()
            ancestors.add(id(up))
            up = up.parent
        seen: set[int] = set()
        stack = [target]
        while stack:
            o = stack.pop().find()
            if id(o) in seen:
                continue
            seen.add(id(o))
            if id(o) in ancestors or o is alias:
                return True
            stack.extend(o.children)
            if o.target_block is not None:
                stack.append(self.roots[o.target_block])
        return False

    def _fit(self, bi: int, alias: TreeLine, rep: _Occ) -> tuple[bool, bool, bool, bool, bool]:
        """How well block ``bi``'s region fits as the target of ``alias`` (G5).

        In order: a region that reaches the alias cannot be its target (QEMU would
        render it forever); the type word must agree (an alias prints its final
        target's); the same owner (``-o``); no same-named alias bound to it yet (a
        device has one ``pci_bridge_mem``: a second one belongs to another device and
        its own target); something inside the alias window.
        """
        target = self.roots[bi].find()
        if self._would_cycle(target, rep):
            return (False, False, False, False, False)
        fresh_name = alias.name not in self.bound_names.get(bi, ())
        tline = target.line
        if tline is None:
            return (True, True, False, fresh_name, False)
        type_ok = (not self.doc.dialect.alias_target_word or tline.alias_target is not None
                   or tline.type_word == alias.type_word)
        owner_ok = alias.ownership is not None and alias.ownership == tline.ownership
        block = self.doc.blocks[target.block]
        lines = _subtree_lines(block, target)[1:]
        base = tline.start
        lo, hi = alias.alias_start, alias.alias_end
        inside = any(lo <= ((ln.end - base) & MASK64) and ((ln.start - base) & MASK64) <= hi
                     for ln in lines)
        return (True, type_ok, owner_ok, fresh_name, inside)

    def _stand_in(self, upto: int, before: _Occ | None) -> None:
        """Queue the blocks ``len(queue) .. upto-1`` through hidden aliases placed
        just before ``before`` (a fresh occurrence), or just after the last fresh one."""
        doc = self.doc
        for k in range(len(self.queue), upto):
            bi = self.region_blocks[k]
            if doc.shows_disabled or doc.dialect.disabled == "shown":
                raise ParseError(
                    f"'memory-region: {self._name(bi)}' is not the target of any alias "
                    "printed before it, although this text shows disabled regions",
                    line=doc.blocks[bi].header_lineno, column=1)
            if before is not None and before.parent is not None:
                parent = before.parent.find()
                mine = before.find()
                _insert_hidden(parent, parent.children.index(mine), mine, target_block=bi)
            elif self.last_fresh is not None and self.last_fresh[1] >= self.last_enqueue:
                # Anything met after the last enqueue is a valid place, the last stand-in
                # included: consecutive hidden aliases go one after the other.
                anchor = self.last_fresh[0].find()
                if anchor.parent is not None:
                    parent = anchor.parent.find()
                    at = parent.children.index(anchor) + 1
                    stand_in = _insert_hidden(parent, at, anchor, target_block=bi)
                else:
                    stand_in = _insert_hidden(anchor, len(anchor.children), None,
                                              target_block=bi)
                self.last_fresh = (stand_in, self.pos)
            else:
                raise ParseError(
                    f"'memory-region: {self._name(bi)}' comes earlier than any printing of "
                    "this tree could queue it", line=doc.blocks[bi].header_lineno, column=1)
            self._claim(bi)


def _resolve_aliases(doc: TreeDocument, roots: list[_Occ]) -> None:
    _Replay(doc, roots).run()


def _make_machine(doc: TreeDocument, roots: list[_Occ]) -> Machine:
    """Create one :class:`MemoryRegion` per distinct occurrence and wire them up."""
    regions: dict[int, MemoryRegion] = {}
    reps: list[_Occ] = []
    for root in roots:
        for occ in root.walk():
            if occ.find() is occ and id(occ) not in regions:
                regions[id(occ)] = _region_for(occ, doc)
                reps.append(occ)
    for occ in reps:
        mr = regions[id(occ)]
        kids = [regions[id(c.find())] for c in occ.children]
        # The printed order is (addr, -priority) with ties in list order. QEMU's list is
        # priority-descending, newest first; among equals the text does not say which is
        # newer (G3): the higher address is taken as newer. Equal keys keep printed order.
        kids.sort(key=lambda k: (-k.priority, -(k.addr & MASK64)))
        mr.subregions = kids
        for k in kids:
            k.container = mr
        _note_overlaps(mr)
    for occ in reps:
        if occ.target_block is None:
            continue
        mr = regions[id(occ)]
        mr.alias = regions[id(roots[occ.target_block].find())]
        target = mr.alias
        if (target.synthetic and target.kind is RegionKind.CONTAINER and occ.line is not None
                and occ.line.type_word in KIND_OF_WORD):
            # Reliability fix (issue 6): a hidden (disabled) target prints no line, but
            # the alias's line carries its type word (§1.1): keep it for re-printing.
            target.kind = KIND_OF_WORD[occ.line.type_word]
            target.readonly = target.kind is RegionKind.ROM
        if mr.fact("readonly") is None:
            mr.set_fact(Fact("G2", "readonly", "no", Source.DEFAULT,
                             "an alias's own read-only flag is not printed: assume writable"))
        if occ.target_choice is not None and occ.target_choice[0] > 1:
            n, (owner_ok, inside) = occ.target_choice
            how = ("its owner" if owner_ok else "content inside the window" if inside
                   else "the order QEMU queued them in")
            mr.set_fact(Fact("G5", "alias target", mr.alias.label, Source.DEFAULT,
                             f"{n} regions are named {mr.alias.label!r}; chosen by {how}"))
    machine = Machine()
    tree_order: list[MemoryRegion | None] = []
    for block, root in zip(doc.blocks, roots, strict=True):
        if block.is_region_block:
            continue
        mr = regions[id(root.find())]
        tree_order.append(mr)
        for name in _creation_order(block.names):
            machine.address_spaces.append(AddressSpace(name, mr))
    machine.tree_order = tree_order
    machine.set_fact(Fact("G9", "address-space order", "as printed", Source.DEFAULT,
                          "creation order is not printed: address spaces are kept in the "
                          "order of their groups, names sorted"))
    # Containers come from the text's indentation, so they cannot loop; aliases can.
    machine.check(containers=False)
    return machine


def _creation_order(names: list[str]) -> list[str]:
    """Undo QEMU's group header sort as far as it can be undone.

    Equal names print newest first, so runs of equal names are reversed; the order
    of different names is not printed (G9) and stays sorted.
    """
    out: list[str] = []
    i = 0
    while i < len(names):
        j = i
        while j < len(names) and names[j] == names[i]:
            j += 1
        out.extend(reversed(names[i:j]))
        i = j
    return out


def _note_overlaps(mr: MemoryRegion) -> None:
    """Record the G3 default where enabled equal-priority siblings overlap.

    A sweep per priority over the siblings sorted by address: O(k log k).
    """
    by_prio: dict[int, list[MemoryRegion]] = {}
    for k in mr.subregions:
        if k.enabled and k.size:
            by_prio.setdefault(k.priority, []).append(k)
    for prio, kids in by_prio.items():
        if len(kids) < 2:
            continue
        kids.sort(key=lambda k: k.addr)
        reach, holder = kids[0].addr + kids[0].size, kids[0]
        for k in kids[1:]:
            if k.addr < reach and k.addr != holder.addr:
                k.set_fact(Fact("G3", "order", f"above {holder.label}", Source.DEFAULT,
                                f"overlaps {holder.label!r} at equal priority {prio}; which "
                                "was added last is not printed: assume the one at the "
                                "higher address"))
            if k.addr + k.size > reach:
                reach, holder = k.addr + k.size, k


def _region_for(occ: _Occ, doc: TreeDocument) -> MemoryRegion:
    line = occ.line
    parent = occ.parent
    base = parent.start if parent is not None else 0
    if line is None:
        # A hidden stand-in: disabled, so it never renders and prints nothing without -D.
        return MemoryRegion(
            occ.name, RegionKind.ALIAS if occ.target_block is not None else RegionKind.CONTAINER,
            min(occ.size, 1 << 64), addr=(occ.start - base) & MASK64, priority=occ.priority,
            enabled=False, synthetic=True, hidden_overflow_markers=occ.markers)
    size = _size_of(line)
    if line.alias_target is not None and \
            (line.alias_start + last(size)) & MASK64 != line.alias_end:
        window = f"{hex16(line.alias_start)}-{hex16(line.alias_end)}"
        raise doc.error(f"alias window {window} does not have the alias's size "
                        f"({size:#x} bytes)", line.lineno, window)
    if line.type_word in ACCESS_LETTERS:
        return _region_from_letters(occ, line, size, base)
    if line.alias_target is not None:
        kind = RegionKind.ALIAS
    elif line.type_word in ("i/o", "container"):
        kind = RegionKind.CONTAINER if _has_real_children(occ) else RegionKind.IO
    else:
        kind = KIND_OF_WORD[line.type_word]
    return _new_region(occ, line, kind, size, base)


def _has_real_children(occ: _Occ) -> bool:
    """Subregions the text shows or implies. The stand-ins for hidden aliases that only
    reproduce the order of ``memory-region:`` blocks go wherever is convenient and say
    nothing about the region they were put under."""
    return any(c.target_block is None or c.line is not None for c in occ.children)


def _region_from_letters(occ: _Occ, line: TreeLine, size: int, base: int) -> MemoryRegion:
    """A region printed with access letters (QEMU 1.1–2.8): ``R`` readable (ROMD mode),
    ``W`` writable. The letters say read-only-ness exactly, even for aliases, but not
    RAM versus MMIO: a writable leaf is taken for MMIO, a read-only one for ROM."""
    readable, writable = line.type_word[0] == "R", line.type_word[1] == "W"
    if line.alias_target is not None:
        kind = RegionKind.ALIAS
    elif not readable:
        kind = RegionKind.ROMD  # a ROM device out of ROMD mode
    elif _has_real_children(occ):
        kind = RegionKind.CONTAINER
    else:
        kind = RegionKind.IO if writable else RegionKind.ROM
    mr = _new_region(occ, line, kind, size, base)
    mr.romd_mode = readable
    mr.readonly = not writable and kind is not RegionKind.ROMD
    mr.facts = [f for f in mr.facts if f.gap != "G1"]
    if kind is RegionKind.ALIAS:
        mr.set_fact(Fact("G2", "readonly", "yes" if mr.readonly else "no", Source.TEXT,
                         f"access letters {line.type_word}"))
    elif readable and not _has_real_children(occ):
        what = "i/o" if writable else "rom"
        mr.set_fact(Fact("G1", "kind", what, Source.DEFAULT,
                         f"access letters {line.type_word} do not tell RAM from MMIO: "
                         f"assume {what}"))
    return mr


def _new_region(occ: _Occ, line: TreeLine, kind: RegionKind, size: int,
                base: int) -> MemoryRegion:
    mr = MemoryRegion(
        line.name, kind, size, addr=(line.start - base) & MASK64, priority=line.priority,
        enabled=not line.disabled, readonly=line.type_word == "rom",
        nonvolatile=line.nonvolatile, alias_offset=line.alias_start,
        ownership=line.ownership)
    if kind in (RegionKind.CONTAINER, RegionKind.IO):
        what = kind.value
        why = "has subregions" if _has_real_children(occ) else "has no subregions"
        mr.facts.append(Fact("G1", "kind", what, Source.DEFAULT,
                             f"printed 'i/o' and {why}: assume {what}"))
    if line.start == line.end:
        mr.facts.append(Fact("G4", "size", "1", Source.DEFAULT,
                             "printed X-X: sizes 0 and 1 look alike; assume 1 byte"))
    return mr


