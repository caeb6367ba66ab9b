"""What the ``info mtree`` tree text does not say, and how qmirror decides it anyway.

docs/text-gaps.md lists the facts a renderer needs that the 7.2 tree text hides (G1–G9).
The tree parser fills each with a documented default and records it as a
:class:`~qmirror.core.model.Fact`. This module improves on the defaults, in this order:

1. :data:`~qmirror.rebuild.rules.RULES`, a table of sourced facts about QEMU's own devices:
   each rule names
   the region (by name plus what else identifies it), the QEMU source that sets the
   fact, and the versions it holds for. Rules only fill gaps: an attribute read from
   the text is never overridden.
2. :func:`infer`, evidence from QEMU's own ``-f`` output of the same VM, one region
   attribute at a time (a range named after the region where only the region itself
   can have put it, a ``rom`` range under an alias, ...). Never a range copied from
   QEMU: the renderer still produces every range itself. Each inferred attribute is
   recorded with its evidence; ``--strict`` skips this step.
3. the defaults, kept where neither decided.

Facts harvested from other VMs of the same QEMU version (:mod:`qmirror.rebuild.harvest`)
come between 1 and 2: inference may still revise them where this VM's ``-f`` disagrees.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable

from qmirror.core.model import (
    AddressSpace,
    ASIdent,
    Fact,
    Machine,
    MemoryRegion,
    RegionKind,
    Source,
)
from qmirror.core.render import (
    FlatRange,
    FlatView,
    Visit,
    flatview_root,
    render_machine,
    walk_visits,
)
from qmirror.rebuild.identity import copy_subtree
from qmirror.rebuild.rules import DIRTY_MEMORY_VGA, RULES, Rule
from qmirror.text.document import FlatViewBlock
from qmirror.text.flat import FlatDocument
from qmirror.text.grammar import FlatRangeLine, hex16


def _set(mr: MemoryRegion, attribute: str, value: object) -> None:
    if attribute == "kind":
        assert isinstance(value, RegionKind)
        mr.kind = value
    elif attribute == "readonly":
        mr.readonly = bool(value)
    elif attribute == "size":
        assert isinstance(value, int)
        mr.size = value
    elif attribute == "dirty_log_mask":
        assert isinstance(value, int)
        mr.dirty_log_mask |= value
    elif attribute == "order":
        # "below NAME": NAME was added after mr, so it comes first in the list (G3);
        # "above NAME" the other way round.
        assert isinstance(value, str) and mr.container is not None
        where, _, name = value.partition(" ")
        subs = mr.container.subregions
        named = [s for s in subs if s.label == name and s is not mr]
        # Of namesakes (two aspeed.gpio controllers, say), the one that overlaps mr.
        rival = next(
            (s for s in named if s.addr < mr.addr + mr.size and mr.addr < s.addr + s.size),
            named[0],
        )
        i, j = subs.index(mr), subs.index(rival)
        if (i < j) == (where == "below"):
            subs[i], subs[j] = subs[j], subs[i]
    else:  # pragma: no cover - the table only uses the attributes above
        raise ValueError(attribute)


def _shown(attribute: str, value: object) -> str:
    if isinstance(value, RegionKind):
        return value.value
    if attribute == "readonly":
        return "yes" if value else "no"
    if attribute == "size":
        return f"{value:#x}" if isinstance(value, int) else str(value)
    if attribute == "dirty_log_mask" and value == DIRTY_MEMORY_VGA:
        return "VGA"
    return str(value)


def _open_to(mr: MemoryRegion, rule: Rule) -> bool:
    """Whether ``rule`` may decide its attribute for ``mr``: only gaps, never text."""
    f = mr.fact(rule.attribute)
    if rule.attribute == "dirty_log_mask":
        return f is None or f.source is not Source.TEXT
    return f is not None and f.source is Source.DEFAULT


def apply_rules(machine: Machine, rules: Iterable[Rule] = RULES) -> list[tuple[MemoryRegion, Rule]]:
    """Apply the rule table to every region whose attribute the text left open.

    :return: the (region, rule) pairs applied.
    """
    applied: list[tuple[MemoryRegion, Rule]] = []
    table = list(rules)
    by_name: dict[str, list[Rule]] = {}
    patterns = [r for r in table if r.pattern]
    for r in table:
        if not r.pattern:
            by_name.setdefault(r.name, []).append(r)
    # Rules for any name (``name=""``) are identified by their condition alone.
    any_name = by_name.pop("", [])
    # One regex for all name patterns: most regions match none of them. Names repeat
    # (one per device of a kind), so which patterns a name matches is found once.
    any_pattern = re.compile("|".join(f"(?:{r.name})" for r in patterns)) if patterns else None
    by_pattern: dict[str, list[Rule]] = {}
    for mr in list(machine.regions()):
        name = mr.name
        if name is None:
            continue
        matched = by_pattern.get(name)
        if matched is None:
            hit = any_pattern is not None and any_pattern.fullmatch(name) is not None
            matched = [r for r in patterns if re.fullmatch(r.name, name)] if hit else []
            by_pattern[name] = matched
        candidates = by_name.get(name, []) + any_name + matched
        for rule in candidates:
            # The name matches by construction: only the rule's condition is left.
            if (rule.when is not None and not rule.when(mr)) or not _open_to(mr, rule):
                continue
            # A callable value is worked out per region (e.g. which sibling is newer).
            value = rule.value(mr) if callable(rule.value) else rule.value
            _set(mr, rule.attribute, value)
            mr.set_fact(
                Fact(
                    rule.gap,
                    rule.attribute,
                    _shown(rule.attribute, value),
                    Source.RULE,
                    f"{rule.id}: {rule.source} [QEMU {rule.versions}]",
                )
            )
            applied.append((mr, rule))
    return applied


def infer_accel_from_tree(machine: Machine) -> str | None:
    """G7: the accelerator, where the tree shows it (x86 only), else ``None``.

    TCG on x86 always creates ``cpu-smm-N`` address spaces (target/i386/tcg); KVM's
    in-kernel irqchip creates ``kvm-*`` device regions and KVM with SMM a ``KVM-SMRAM``
    address space (accel/kvm, hw/i386/kvm).
    """
    names = {a.name for a in machine.address_spaces}
    if any(n == "KVM-SMRAM" for n in names):
        return "kvm"
    if any(n.startswith("cpu-smm-") for n in names):
        return "tcg"
    kvm_regions = {"kvm-apic-msi", "kvm-ioapic", "kvm-pic", "kvm-pit", "kvm-elcr"}
    if any(mr.name in kvm_regions for mr in machine.regions()):
        return "kvm"
    return None


# -- inference from QEMU's -f ---------------------------------------------------------


#: One FlatView: the sorted multiset of its address spaces' identities.
ViewKey = tuple[ASIdent, ...]


def block_key(block: FlatViewBlock) -> ViewKey:
    """Key of a FlatView block: the sorted multiset of its `` AS`` lines (name, root, alias)."""
    return tuple(sorted((a.name, a.root, a.alias) for a in block.address_spaces))


def pair_views(ours: list[FlatView], qemu: FlatDocument) -> list[tuple[FlatView, FlatViewBlock]]:
    """Pair our FlatViews with QEMU's blocks that serve the same address spaces."""
    index: dict[ViewKey, list[FlatViewBlock]] = {}
    for b in qemu.views:
        index.setdefault(block_key(b), []).append(b)
    pairs: list[tuple[FlatView, FlatViewBlock]] = []
    for v in ours:
        cands = index.get(tuple(sorted(a.ident() for a in v.address_spaces)))
        if cands:
            best = 0
            if len(cands) > 1:
                # Several address spaces of one name and root name (QEMU 10's one
                # `virtio-pci-cfg-mem-as` per virtio-pci device): the block whose ranges
                # carry the most names of our root's regions.
                names = _region_names(v.root)
                scores = [len(names.intersection(r.name for r in c.ranges)) for c in cands]
                best = scores.index(max(scores))
            pairs.append((v, cands.pop(best)))
    return pairs


def _region_names(root: MemoryRegion | None) -> set[str]:
    """Names of *root* and the regions below it (subregions, not alias targets)."""
    names: set[str] = set()
    seen: set[MemoryRegion] = set()
    stack = [root] if root is not None else []
    while stack:
        mr = stack.pop()
        if mr in seen:
            continue
        seen.add(mr)
        if mr.name is not None:
            names.add(mr.name)
        stack.extend(mr.subregions)
    return names


class _QemuView:
    """QEMU's ranges of one block, searchable by address."""

    def __init__(self, block: FlatViewBlock) -> None:
        self.block = block
        self.ranges = block.ranges
        self.starts = [r.start for r in block.ranges]
        names = [a.name for a in block.address_spaces]
        self.label = ", ".join(f'"{n}"' for n in names[:3]) + (" …" if len(names) > 3 else "")
        #: The ranges of each name and their starts, in address order (see :meth:`overlapping`).
        self.by_name: dict[str, tuple[list[int], list[FlatRangeLine]]] = {}
        for r in block.ranges:
            starts, named = self.by_name.setdefault(r.name, ([], []))
            starts.append(r.start)
            named.append(r)

    def overlapping(self, lo: int, hi: int, name: str | None = None) -> list[FlatRangeLine]:
        """QEMU's ranges that overlap ``[lo, hi)``; only those named ``name`` if given.

        Reliability fix (issue 6): with a name, only that name's ranges are searched, so
        nested containers that all span the address space do not each scan the whole
        view (quadratic on deep trees).
        """
        starts, ranges = (
            (self.starts, self.ranges) if name is None else self.by_name.get(name, ([], []))
        )
        i = max(0, bisect.bisect_right(starts, lo) - 1)
        out = []
        while i < len(ranges) and ranges[i].start < hi:
            if ranges[i].end >= lo:
                out.append(ranges[i])
            i += 1
        return out

    def at(self, addr: int) -> FlatRangeLine | None:
        hits = self.overlapping(addr, addr + 1)
        return hits[0] if hits else None


def _describe(r: FlatRangeLine, where: _QemuView) -> str:
    off = f" @{hex16(r.offset)}" if r.offset else ""
    return (
        f"QEMU shows '{r.name}{off}' ({r.type_word}) at {hex16(r.start)} in the FlatView of "
        f"{where.label}"
    )


def is_open(mr: MemoryRegion, attribute: str) -> bool:
    """Whether evidence may still decide ``attribute``: a default, or a fact harvested
    on other VMs (this VM's own ``-f`` outweighs what others showed)."""
    f = mr.fact(attribute)
    return f is not None and f.source in (Source.DEFAULT, Source.HARVESTED)


def infer(
    machine: Machine, qemu: FlatDocument, *, rounds: int = 4, views: list[FlatView] | None = None
) -> list[Fact]:
    """Decide open attributes from QEMU's own ``-f`` text of the same machine.

    Evidence, one region attribute at a time (docs/text-gaps.md, "How a gap is filled"):

    * G1 — an ``i/o`` region terminates if QEMU shows a range named after it at the
      offset only it can have there (range start − its base in the walk); one that
      is reachable but never shown that way is treated as a container, which changes
      no FlatView;
    * G4 — a region printed ``X-X`` that QEMU never shows (or, for an alias, whose
      byte QEMU fills with something else) has size 0;
    * G2 — where QEMU shows ``rom`` and we render the same region and offset
      writable, an alias on the way is read-only: the only open one, else the
      innermost; an alias through which QEMU shows a writable range is not;
    * G3 — for equal-priority siblings that overlap, the order that reproduces
      QEMU's ranges there wins.

    Runs until nothing changes (at most ``rounds`` times).

    :param views: the machine rendered as it is now, if the caller has it (saves a
        render of the whole machine).
    :return: the facts inferred, in the order they were decided.
    """
    # G3 lives in its own module, which uses this one's helpers.
    from qmirror.rebuild.order import infer_order  # noqa: PLC0415

    decided: list[Fact] = []
    _infer_empty_roots(machine, qemu, decided)
    if decided:
        views = None  # a root changed kind: render again
    namesakes = _with_namesakes(machine)
    for _ in range(rounds):
        # The model was checked when it was built; inference changes no alias or
        # container, so no render here checks it again.
        if views is None:
            views = render_machine(machine, check=False)
        pairs = [(v, _QemuView(b)) for v, b in pair_views(views, qemu)]
        changed = _infer_kind_and_size(pairs, decided, namesakes)
        changed |= _infer_alias_readonly(pairs, decided)
        if not changed:
            # Nothing above changed the model (each change says so): same render.
            changed = infer_order(machine, qemu, decided, views)
        if not changed:
            break
        views = None
    return decided


def split_shared_roots(machine: Machine, qemu: FlatDocument) -> list[Fact]:
    """Structure from QEMU's ``-f`` for trees printed one block per address space
    (before 7.0): identical roots there (same name, owner and subtree) were read as one
    region, but QEMU shares a FlatView exactly between address spaces with the same
    root. Address spaces of one root that QEMU puts in different FlatViews get their
    own copy of it (AMD-Vi's per-device `amdvi_root`, per-CPU `memory` roots without
    ``-o``).

    :return: one fact per copy made, on the copy's root.
    """
    if qemu.dialect.flat != "flatview":
        return []
    names = [a.name for a in machine.address_spaces]
    block_of: dict[str, int] = {}
    seen_in_qemu: dict[str, int] = {}
    for i, b in enumerate(qemu.views):
        for line in b.address_spaces:
            seen_in_qemu[line.name] = seen_in_qemu.get(line.name, 0) + 1
            block_of[line.name] = i
    by_root: dict[MemoryRegion, list[AddressSpace]] = {}
    for a in machine.address_spaces:
        if a.root is not None:
            by_root.setdefault(a.root, []).append(a)
    decided: list[Fact] = []
    for spaces in by_root.values():
        groups: dict[int, list[AddressSpace]] = {}
        for a in spaces:
            # Only names that say which block they are in, on both sides.
            if names.count(a.name) == 1 and seen_in_qemu.get(a.name) == 1:
                groups.setdefault(block_of[a.name], []).append(a)
        if len(groups) < 2:
            continue
        for group in list(groups.values())[1:]:
            root = group[0].root
            assert root is not None
            copy = copy_subtree(root, None)
            shown = ", ".join(f'"{a.name}"' for a in group)
            copy.set_fact(
                Fact(
                    "G5",
                    "identity",
                    "own region",
                    Source.INFERRED,
                    f"QEMU's -f gives {shown} a FlatView of its own: its "
                    f"`{root.label}` is not the region the other address "
                    "spaces print identically",
                )
            )
            decided.append(copy.facts[-1])
            for a in group:
                a.root = copy
    return decided


def _infer_empty_roots(machine: Machine, qemu: FlatDocument, decided: list[Fact]) -> None:
    """G1 from FlatView roots: an address space QEMU gives the shared empty view
    (``Root memory region: (none)``) has a root that renders nothing. If ours stops at a
    region with no enabled subregions that we took for terminating, it is a container.
    """
    empty: set[tuple[str, str, str | None]] = set()
    for b in qemu.views:
        if b.root is None:
            empty.update((a.name, a.root, a.alias) for a in b.address_spaces)
    for a in machine.address_spaces:
        if a.root is None:
            continue
        key = (a.name, a.root.label, a.root.alias.label if a.root.alias is not None else None)
        if key not in empty:
            continue
        mr = flatview_root(a.root)
        if (
            mr is not None
            and mr.kind is RegionKind.IO
            and is_open(mr, "kind")
            and not any(c.enabled for c in mr.subregions)
        ):
            mr.kind = RegionKind.CONTAINER
            record_fact(
                mr,
                decided,
                Fact(
                    "G1",
                    "kind",
                    "container",
                    Source.INFERRED,
                    f'QEMU gives address space "{a.name}" the empty FlatView (Root memory region: '
                    "(none)), so its root renders nothing",
                ),
            )


def record_fact(mr: MemoryRegion, decided: list[Fact], fact: Fact) -> None:
    mr.set_fact(fact)
    decided.append(fact)


def _with_namesakes(machine: Machine) -> set[MemoryRegion]:
    """The regions with a descendant (through subregions) of their own name.

    Reliability fix (issue 6): one pass over the subregion forest; asking each region's
    whole subtree instead was quadratic on deep trees (minutes for 4000 levels). Each
    region marks the nearest ancestor of its name; that one marks the next, and so on.
    """
    reached = list(machine.regions())
    known = set(reached)
    out: set[MemoryRegion] = set()
    for top in reached:
        if top.container is not None and top.container in known:
            continue  # walked from its own top
        above: dict[str, list[MemoryRegion]] = {}
        stack: list[tuple[MemoryRegion, bool]] = [(top, False)]
        while stack:
            mr, leaving = stack.pop()
            same = above.setdefault(mr.label, [])
            if leaving:
                same.pop()
                continue
            if same:
                out.add(same[-1])
            same.append(mr)
            stack.append((mr, True))
            stack.extend((kid, False) for kid in reversed(mr.subregions))
    return out


def _infer_kind_and_size(
    pairs: list[tuple[FlatView, _QemuView]], decided: list[Fact], namesakes: set[MemoryRegion]
) -> bool:
    seen_as_itself: dict[MemoryRegion, str] = {}
    absent: dict[MemoryRegion, str] = {}
    regions: dict[MemoryRegion, None] = {}  # an ordered set
    for view, qv in pairs:
        if view.root is None:
            continue
        for visit, cs, ce, base in walk_visits(view.root):
            mr = visit.mr
            if mr.alias is not None or not (is_open(mr, "kind") or is_open(mr, "size")):
                continue
            if mr.kind not in (RegionKind.IO, RegionKind.CONTAINER):
                continue
            regions[mr] = None
            ambiguous = mr in namesakes
            for h in qv.overlapping(cs, ce, mr.label):
                # Identity is name and offset; a different priority is a difference to
                # report, not evidence against the region.
                if h.name == mr.label and h.offset == h.start - base and not ambiguous:
                    seen_as_itself.setdefault(mr, _describe(h, qv))
                    break
            else:
                absent.setdefault(
                    mr,
                    f"QEMU shows no range of it in the FlatView of "
                    f"{qv.label} at {hex16(cs)}-{hex16(ce - 1)}",
                )
    changed = False
    for mr in regions:
        if mr in seen_as_itself:
            if is_open(mr, "kind") and mr.kind is not RegionKind.IO:
                mr.kind = RegionKind.IO
                record_fact(
                    mr, decided, Fact("G1", "kind", "i/o", Source.INFERRED, seen_as_itself[mr])
                )
                changed = True
            continue
        if mr not in absent:
            continue
        if is_open(mr, "size") and mr.size == 1 and mr.kind is RegionKind.IO:
            mr.size = 0
            record_fact(
                mr,
                decided,
                Fact("G4", "size", "0x0", Source.INFERRED, "printed X-X and " + absent[mr]),
            )
            changed = True
        elif is_open(mr, "kind") and mr.kind is RegionKind.IO:
            mr.kind = RegionKind.CONTAINER
            record_fact(
                mr,
                decided,
                Fact("G1", "kind", "container", Source.INFERRED, "reachable, but " + absent[mr]),
            )
            changed = True
    # Aliases printed X-X whose one byte QEMU fills with something else: size 0.
    for view, qv in pairs:
        for r in view.ranges:
            if r.via is None or not r.via.aliases:
                continue  # no alias on the way (and path() costs the depth)
            path = r.via.path()
            for mr in path:
                if mr.alias is None or mr.size != 1 or not is_open(mr, "size"):
                    continue
                there = qv.at(r.start)
                if there is None or there.name != r.mr.label or there.offset != r.offset_in_region:
                    what = "nothing" if there is None else f"'{there.name}'"
                    mr.size = 0
                    record_fact(
                        mr,
                        decided,
                        Fact(
                            "G4",
                            "size",
                            "0x0",
                            Source.INFERRED,
                            f"printed X-X, and QEMU shows {what} at {hex16(r.start)} where a "
                            f"1-byte window would show '{r.mr.label}' (FlatView of {qv.label})",
                        ),
                    )
                    changed = True
    return changed


def _parts(r: FlatRange) -> list[tuple[int, int, Visit | None]]:
    """The pieces of a merged range, each with the walk step that produced it."""
    starts: list[tuple[int, Visit | None]] = [(r.start, r.via), *(r.parts or ())]
    out = []
    for i, (lo, visit) in enumerate(starts):
        hi = starts[i + 1][0] if i + 1 < len(starts) else r.end
        out.append((lo, hi, visit))
    return out


def _infer_alias_readonly(pairs: list[tuple[FlatView, _QemuView]], decided: list[Fact]) -> bool:
    votes_ro: dict[MemoryRegion, str] = {}
    writable: set[MemoryRegion] = set()
    regions: dict[MemoryRegion, None] = {}  # an ordered set
    for view, qv in pairs:
        ours = view.ranges
        starts = [r.start for r in ours]
        for h in qv.ranges:
            h_end = h.end + 1
            i = max(0, bisect.bisect_right(starts, h.start) - 1)
            while i < len(ours) and ours[i].start < h_end:
                r = ours[i]
                i += 1
                if h.name != r.mr.label or h.offset - h.start != r.offset_in_region - r.start:
                    continue
                for lo, hi, visit in _parts(r):
                    if hi <= h.start or lo >= h_end or visit is None or not visit.aliases:
                        continue
                    open_aliases = [
                        m for m in visit.path() if m.alias is not None and is_open(m, "readonly")
                    ]
                    if not open_aliases:
                        continue
                    if h.type_word != "rom":
                        writable.update(open_aliases)
                        continue
                    if r.readonly:
                        continue
                    chosen = open_aliases[-1]
                    regions[chosen] = None
                    why = _describe(h, qv) + f" where we render '{r.mr.label}' writable"
                    if len(open_aliases) > 1:
                        why += (
                            " (innermost of " + ", ".join(repr(m.label) for m in open_aliases) + ")"
                        )
                    votes_ro.setdefault(chosen, why)
    changed = False
    for mr in regions:
        if mr in writable:
            continue
        mr.readonly = True
        record_fact(mr, decided, Fact("G2", "readonly", "yes", Source.INFERRED, votes_ro[mr]))
        changed = True
    return changed


def close_cyclic_windows(machine: Machine) -> list[Fact]:
    """G4: aliases printed ``X-X`` on a cycle of the region graph are empty (size 0).

    Run only once a render has refused an alias cycle. A size-1 window on a cycle would
    send QEMU's walk round it for ever too, and QEMU did print this VM's FlatViews: so
    such a window is closed (a plain tree that cannot tell the bridges' windows apart
    can bind one bridge's closed window to another's region). The comparison with
    QEMU's ``-f`` still judges the result.
    """
    # Tarjan's strongly connected components, iteratively (trees can be deep).
    edges: dict[MemoryRegion, list[MemoryRegion]] = {}
    for mr in machine.regions():
        nxt = [c for c in mr.subregions if c.enabled]
        if mr.alias is not None:
            nxt.append(mr.alias)
        edges[mr] = nxt
    index: dict[MemoryRegion, int] = {}
    low: dict[MemoryRegion, int] = {}
    on_stack: set[MemoryRegion] = set()
    stack: list[MemoryRegion] = []
    cyclic: set[MemoryRegion] = set()
    for start in edges:
        if start in index:
            continue
        work: list[tuple[MemoryRegion, int]] = [(start, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            succ = edges.get(v, [])
            if i < len(succ):
                work.append((v, i + 1))
                w = succ[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if work and work[-1][1] > 0:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w is v:
                        break
                if len(comp) > 1 or any(s is v for s in edges.get(v, [])):
                    cyclic.update(comp)
    decided: list[Fact] = []
    # In the machine's region order (a set's order would depend on addresses).
    for mr in edges:
        if mr not in cyclic:
            continue
        f = mr.fact("size")
        if mr.alias is None or f is None or f.gap != "G4" or not is_open(mr, "size"):
            continue
        mr.size = 0
        record_fact(
            mr,
            decided,
            Fact(
                "G4",
                "size",
                "0x0",
                Source.INFERRED,
                "printed X-X on an alias cycle: at size 1 the render walk would never end, "
                "and QEMU printed this VM's FlatViews",
            ),
        )
    return decided
