"""Tree text to occurrences: one node per printed line (or hidden stand-in), and the
unification of the occurrences that are one region printed twice.

Part of :func:`qmirror.rebuild.tree.build_machine` (see its module for the text's
quirks); :mod:`qmirror.rebuild.replay` binds aliases to blocks over these occurrences.
"""

from __future__ import annotations

from qmirror.core.model import MASK64, MemoryRegion
from qmirror.text.document import TreeBlock
from qmirror.text.grammar import TreeLine
from qmirror.text.tree import TreeDocument


class Occ:
    """One occurrence of a region in the text: a printed line, or a hidden stand-in."""

    __slots__ = (
        "block",
        "children",
        "index",
        "line",
        "markers",
        "mr",
        "name",
        "parent",
        "priority",
        "rep",
        "shape",
        "size",
        "start",
        "target_block",
        "target_choice",
    )

    def __init__(self, line: TreeLine | None, parent: Occ | None, block: int) -> None:
        self.line = line
        self.parent = parent
        self.block = block
        #: A shared empty tuple until the first child: most occurrences are leaves.
        self.children: list[Occ] | tuple[Occ, ...] = ()
        self.rep: Occ = self
        self.index = -1  # position of the line in its block; -1 for stand-ins
        self.name: str | None = line.name if line is not None else None
        self.start = line.start if line is not None else 0
        #: A stand-in's size (a printed line's is :func:`size_of` its line).
        self.size = 1
        self.priority = line.priority if line is not None else 0
        #: For an alias: the block whose region is its target.
        self.target_block: int | None = None
        #: For a stand-in: overflow markers it prints although hidden.
        self.markers = 0
        #: For an alias: (candidates for its target, (same owner, content in window)).
        self.target_choice: tuple[int, tuple[bool, bool]] | None = None
        #: The printed subtree's shape number (:func:`_shape_of`); -1 until needed.
        self.shape = -1
        #: The region made for a representative occurrence (rebuild.tree).
        self.mr: MemoryRegion | None = None

    def find(self) -> Occ:
        o = self
        while o.rep is not o:
            o = o.rep
        return o

    def walk(self) -> list[Occ]:
        """This occurrence and its descendants in printing order (a new list)."""
        out: list[Occ] = []
        add = out.append
        stack = [self]
        pop, push = stack.pop, stack.extend
        while stack:
            o = pop()
            add(o)
            if o.children:  # most are leaves: skip the call
                push(reversed(o.children))
        return out


def size_of(line: TreeLine) -> int:
    return ((line.end - line.start) & MASK64) + 1


def build_block(doc: TreeDocument, bi: int) -> Occ:
    """Turn block ``bi``'s lines into an occurrence tree, standing in for hidden ancestors."""
    block = doc.blocks[bi]
    root: Occ | None = None
    stack: list[Occ] = []
    hidden_any = False
    for idx, line in enumerate(block.lines):
        occ = Occ(line, None, bi)
        occ.index = idx
        if root is None:
            if line.level == 1:
                root = occ
                stack = [occ]
                continue
            root = _hidden_root(block, bi)
            stack = [root]
            hidden_any = True
        elif line.level == 1:
            raise doc.error(
                "a second level-1 line in one block: a block prints one region",
                line.lineno,
                column=3,
            )
        del stack[line.level - 1 :]
        while len(stack) < line.level - 1:
            hidden_any = True
            hidden = Occ(None, stack[-1], bi)
            _adopt(stack[-1], hidden)
            stack.append(hidden)
        occ.parent = stack[-1]
        _adopt(stack[-1], occ)
        stack.append(occ)
    if root is None:
        # Only headers: the root is hidden and has no visible descendants.
        root = _hidden_root(block, bi)
    elif not hidden_any:
        return root  # nothing hidden: no stand-in to place
    _place_stand_ins(root)
    return root


def _adopt(parent: Occ, child: Occ) -> None:
    kids = parent.children
    if isinstance(kids, list):
        kids.append(child)
    else:
        parent.children = [child]


def _hidden_root(block: TreeBlock, bi: int) -> Occ:
    root = Occ(None, None, bi)
    root.name = block.names[0] if block.is_region_block else None
    return root


def _place_stand_ins(root: Occ) -> None:
    """Choose start, size and priority for hidden stand-ins so the printer puts their
    visible descendants back exactly where QEMU printed them."""
    order = root.walk()
    # Bottom-up: a stand-in starts at its first descendant and spans them all.
    for occ in reversed(order):
        if occ.line is not None or not occ.children:
            continue
        lo = min(c.start for c in occ.children)
        hi = max(
            c.start + (c.size if c.line is None else size_of(c.line)) - 1 for c in occ.children
        )
        occ.start = lo
        occ.size = max(1, hi - lo + 1)
    # Top-down: keep each stand-in between its printed neighbours in the sort.
    for occ in order:
        kids = occ.children
        for i, kid in enumerate(kids):
            if kid.line is not None:
                continue
            prev = next((k for k in reversed(kids[:i]) if k.line is not None), None)
            nxt = next((k for k in kids[i + 1 :] if k.line is not None), None)
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


def insert_hidden(
    parent: Occ, at: int, like: Occ | None, *, markers: int = 0, target_block: int | None = None
) -> Occ:
    """Insert a hidden stand-in into ``parent``'s printed children at index ``at``.

    It takes the address and priority of ``like`` (the neighbour it goes next to) so
    the printer's stable sort keeps it exactly there.
    """
    occ = Occ(None, parent, parent.block)
    if like is not None:
        occ.start, occ.priority = like.start, like.priority
    elif parent.children:
        tail = parent.children[-1]
        occ.start, occ.priority = tail.start, tail.priority
    else:
        occ.start = parent.start
    occ.markers = markers
    occ.target_block = target_block
    kids = parent.children
    if not isinstance(kids, list):
        kids = parent.children = list(kids)
    kids.insert(at, occ)
    return occ


def subtree_lines(block: TreeBlock, occ: Occ) -> list[TreeLine]:
    """The printed lines of ``occ``'s subtree (contiguous in the block)."""
    lines = block.lines
    i = occ.index
    level = lines[i].level
    j = i + 1
    while j < len(lines) and lines[j].level > level:
        j += 1
    return lines[i:j]


#: Shape keys interned as numbers (see :func:`_shape_of`).
ShapeTable = dict[tuple[str, int, tuple[tuple[int, int, int], ...]], int]


def _shape_of(occ: Occ, table: ShapeTable) -> int:
    """A number for a printed occurrence: equal numbers, equal printed subtrees.

    Two subtrees print alike when their lines agree one by one in tail, in level below
    the subtree's first line and in start and end relative to its start (modulo 2**64):
    built bottom-up, each line's shape is its tail, its extent and, for each printed
    line right below it (through hidden stand-ins), the level step, the relative start
    and that line's shape number. Interning each shape as a number makes comparing two
    subtrees one integer comparison. Computed on demand and kept on the occurrence, so
    only the subtrees of candidates cost anything, each line at most once (issue 13:
    the shapes of every line cost more than all the rest of unifying at 100k).
    """
    if occ.shape >= 0:
        return occ.shape
    order: list[Occ] = []
    stack = [occ]
    while stack:
        o = stack.pop()
        order.append(o)
        for c in o.children:
            if c.shape < 0:
                stack.append(c)
    for o in reversed(order):  # descendants before their ancestors
        line = o.line
        if line is None:
            continue
        kids: list[tuple[int, int, int]] = []
        below = list(reversed(o.children))
        while below:
            c = below.pop()
            cl = c.line
            if cl is not None:
                kids.append((cl.level - line.level, (cl.start - line.start) & MASK64, c.shape))
            elif c.children:
                below.extend(reversed(c.children))
        key = (line.tail, (line.end - line.start) & MASK64, tuple(kids))
        o.shape = table.setdefault(key, len(table))
    return occ.shape


def _union(dup: Occ, rep: Occ) -> None:
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


def attribute_overflow(doc: TreeDocument, block: TreeBlock, root: Occ) -> None:
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
            raise doc.error(
                "missing '[DETECTED OVERFLOW!] ': QEMU marks a range that wraps", line.lineno
            )
        if extra:
            if parent is None:
                raise doc.error(
                    "overflow marker before a block's first line: no hidden "
                    "region can have printed it",
                    line.lineno,
                )
            insert_hidden(parent, parent.children.index(occ), occ, markers=extra)
    if block.closing_overflow:
        last_occ = root.walk()[-1]
        if last_occ.parent is None:
            insert_hidden(last_occ, 0, None, markers=block.closing_overflow)
        else:
            siblings = last_occ.parent.children
            insert_hidden(
                last_occ.parent,
                siblings.index(last_occ) + 1,
                last_occ,
                markers=block.closing_overflow,
            )


def unify(doc: TreeDocument, roots: list[Occ]) -> None:
    """Identify block roots (and AS roots) with the occurrence they repeat."""
    table: ShapeTable = {}
    # Only occurrences named like a block root can be what a block repeats: their
    # shapes are computed when first asked for, name by name.
    names = {r.line.name for r in roots if r.line is not None}
    by_name: dict[str, list[Occ]] = {}
    for root in roots:
        for occ in root.walk():
            line = occ.line
            if line is not None and occ.parent is not None and line.name in names:
                by_name.setdefault(line.name, []).append(occ)
    #: Candidates by their own line (tail and extent), then by printed shape: only
    #: those alike in their first line have their subtrees' shapes computed.
    by_head: dict[tuple[str, int], list[Occ]] = {}
    by_shape: dict[int, list[Occ]] = {}

    def shape(occ: Occ) -> int:
        return _shape_of(occ, table)

    def head(line: TreeLine) -> tuple[str, int]:
        return (line.tail, (line.end - line.start) & MASK64)

    def candidates(root: Occ) -> list[Occ]:
        line = root.line
        assert line is not None
        todo = by_name.pop(line.name, None)
        if todo is not None:
            for cand in todo:
                assert cand.line is not None
                by_head.setdefault(head(cand.line), []).append(cand)
        todo = by_head.pop(head(line), None)
        if todo is not None:
            for cand in todo:
                by_shape.setdefault(shape(cand), []).append(cand)
        return by_shape.get(shape(root), [])

    # Address-space roots are distinct regions among themselves (QEMU groups them by
    # identity), and so are memory-region blocks (queued by identity); but a block may
    # repeat a region that an AS root also is. So each kind claims candidates apart.
    used_by_roots: set[Occ] = set()
    used_by_blocks: set[Occ] = set()

    def nested_match(root: Occ, used: set[Occ]) -> Occ | None:
        for cand in candidates(root):
            parent = cand.parent
            assert parent is not None
            if cand.block == root.block or cand.find() in used:
                continue
            if parent.line is not None and (cand.start - parent.start) & MASK64 != root.start:
                continue
            return cand
        return None

    group_roots = [
        r
        for r, b in zip(roots, doc.blocks, strict=True)
        if not b.is_region_block and r.line is not None
    ]
    if not doc.dialect.grouped:
        # One block per address space (before 7.0): address spaces sharing a root print
        # it again. Same name, place, owner and subtree: the same region.
        firsts: dict[tuple[str, int, int], list[Occ]] = {}
        kept: list[Occ] = []
        for root in group_roots:
            assert root.line is not None
            alike = firsts.setdefault((root.line.name, root.start, shape(root)), [])
            same = next(
                (
                    g
                    for g in alike
                    if g.line is not None and g.line.ownership == root.line.ownership
                ),
                None,
            )
            if same is None:
                alike.append(root)
                kept.append(root)
            else:
                _union(root, same)
        group_roots = kept
    # An AS root can itself be mapped somewhere (ARM `system` inside `secure-memory`).
    for root in group_roots:
        found = nested_match(root, used_by_roots)
        if found is not None:
            used_by_roots.add(found.find())
            _union(root, found)
    # A candidate serves one block at most (AMD-Vi has one identical `amdvi_root` per
    # device, each its own block).
    roots_by_place: dict[tuple[str, int, int], list[Occ]] = {}
    for g in group_roots:
        assert g.line is not None
        roots_by_place.setdefault((g.line.name, g.start, shape(g)), []).append(g)
    for root, block in zip(roots, doc.blocks, strict=True):
        if not block.is_region_block or root.line is None:
            continue
        match = next(
            (
                g
                for g in roots_by_place.get((root.line.name, root.start, shape(root)), ())
                if g.find() not in used_by_blocks
            ),
            None,
        )
        if match is None:
            match = nested_match(root, used_by_blocks)
        if match is not None:
            used_by_blocks.add(match.find())
            _union(root, match)
