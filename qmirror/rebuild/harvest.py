"""Harvested facts: per-version region behaviour observed on QEMU itself.

``scripts/harvest-rules`` starts each QEMU version once per machine type and once per
pluggable device, reads the tree and the FlatViews, and records how each region
behaves (terminating or container, read-only alias, size-0 window), keyed by its
owner's QOM type and its name with instance numbers blanked out (:func:`name_pattern`).
A key whose observations disagree is dropped. One JSON file per version ships in
``qmirror/rebuild/harvested/``.

The tree text names owners by QOM path, not type, so a text is matched by name
pattern alone, and only where every owner type observed with that name agrees
(:attr:`HarvestTable.by_name`). Facts fill only what the text and the hand-written
rules left open; each one applied is recorded as a :class:`Source.HARVESTED` fact with
its provenance (QEMU version, the VMs it was seen on, how many observations).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from qmirror.core.model import Fact, Machine, MemoryRegion, RegionKind, Source
from qmirror.core.render import FlatView, flatview_root, render_machine, walk_visits
from qmirror.errors import QmirrorError
from qmirror.rebuild.gaps import _parts, _QemuView, _with_namesakes, pair_views
from qmirror.text.flat import FlatDocument


#: Instance numbers and addresses inside region names: ``vtd-00.0``, ``cpu-memory-1``,
#: ``tce-iommu-80000000``; runs joined by ``.``/``:`` count as one (PCI addresses).
_NUMBER = r"(?:0x[0-9a-fA-F]+|[0-9]+)"
_NUMBERS = re.compile(rf"(?<![A-Za-z0-9_]){_NUMBER}(?:[.:]{_NUMBER})*(?![A-Za-z0-9_])")
#: Bracketed indices ``[3]`` as QOM and some devices print them.
_INDEX = re.compile(r"\[[0-9]+\]")

ATTRIBUTES = ("kind", "readonly", "size")
_GAP = {"kind": "G1", "readonly": "G2", "size": "G4"}


def name_pattern(name: str) -> str:
    """The region's name with instance numbers and addresses replaced by ``*``."""
    return _NUMBERS.sub("*", _INDEX.sub("[*]", name))


@dataclass(frozen=True, slots=True)
class Observation:
    """One region attribute QEMU's own ``-f`` shows, on one VM."""

    region: MemoryRegion
    attribute: str  # "kind", "readonly" or "size"
    value: str  # "i/o" | "container"; "yes" | "no"; "0" | "1"
    evidence: str

    @property
    def shape(self) -> Shape:
        return shape_of(self.region)


#: What a name alone leaves open: the region's printed size and whether it shows
#: subregions. A fact only applies to regions of a shape it was seen with, so that
#: one board's ``dma`` (an MMIO leaf) says nothing about another's (a container).
Shape = tuple[int, bool]


def shape_of(mr: MemoryRegion) -> Shape:
    size_fact = mr.fact("size")
    size = 1 if size_fact is not None and size_fact.gap == "G4" else mr.size
    # Enabled ones only: `info mtree` without -D hides the others.
    kids = any(c.enabled and not c.synthetic for c in mr.subregions)
    return size, kids


def _open(mr: MemoryRegion, attribute: str) -> bool:
    """Whether the text left ``attribute`` open (a default, or decided by inference)."""
    f = mr.fact(attribute)
    return f is not None and f.source in (Source.DEFAULT, Source.INFERRED)


def observe(machine: Machine, qemu: FlatDocument) -> list[Observation]:
    """What QEMU's ``-f`` shows about each open attribute of ``machine``'s regions.

    ``machine`` should already render exactly like ``qemu`` (after inference): then a
    reachable ``i/o`` region that QEMU shows a range of, named after it at the offset
    only it can have there, terminates, and one it never shows although QEMU shows
    nothing at all somewhere inside it is a container (where other ranges cover it
    all, nothing is recorded: one VM's overlap proves nothing about the next);
    a region printed ``X-X`` that QEMU shows has size 1, one inference found empty 0;
    an alias of writable RAM through which QEMU shows ``rom`` is read-only, ``ram`` not.
    Regions with a namesake below them are left out (the evidence would be ambiguous).
    """
    out: list[Observation] = []
    namesakes = _with_namesakes(machine)
    pairs = [(v, _QemuView(b)) for v, b in pair_views(render_machine(machine), qemu)]
    seen: dict[MemoryRegion, str] = {}
    absent: dict[MemoryRegion, str] = {}
    regions: dict[MemoryRegion, None] = {}  # an ordered set
    for view, qv in pairs:
        if view.root is None:
            continue
        for visit, cs, ce, base in walk_visits(view.root):
            mr = visit.mr
            if (
                mr.alias is not None
                or mr in namesakes
                or mr.kind not in (RegionKind.IO, RegionKind.CONTAINER)
            ):
                continue
            if not (_open(mr, "kind") or _open(mr, "size")):
                continue
            regions[mr] = None
            for h in qv.overlapping(cs, ce, mr.label):
                if h.name == mr.label and h.offset == h.start - base:
                    seen.setdefault(mr, f"range {h.start:#x}-{h.end:#x} in {qv.label}")
                    break
            else:
                hole = _gap(qv, cs, ce)
                if hole is not None:
                    absent.setdefault(
                        mr,
                        f"no range of it at {cs:#x}-{ce - 1:#x} in "
                        f"{qv.label}, and none at all at {hole:#x}",
                    )
    for mr in regions:
        f = mr.fact("size")
        if mr in seen:
            if _open(mr, "kind"):
                out.append(Observation(mr, "kind", "i/o", seen[mr]))
            if f is not None and f.gap == "G4" and _open(mr, "size"):
                out.append(Observation(mr, "size", "1", seen[mr]))
        elif mr in absent:
            if _open(mr, "kind") and mr.size > 0:
                out.append(Observation(mr, "kind", "container", absent[mr]))
            if f is not None and f.gap == "G4" and f.source is Source.INFERRED and mr.size == 0:
                out.append(Observation(mr, "size", "0", f.detail))
    out += _observe_empty_roots(machine, qemu)
    # Sizes of X-X aliases that inference found empty.
    for mr in machine.regions():
        f = mr.fact("size")
        if (
            mr.alias is not None
            and f is not None
            and f.gap == "G4"
            and f.source is Source.INFERRED
            and mr.size == 0
        ):
            out.append(Observation(mr, "size", "0", f.detail))
    out += _observe_readonly(pairs)
    return out


def _observe_empty_roots(machine: Machine, qemu: FlatDocument) -> list[Observation]:
    """Roots of address spaces QEMU gives the empty FlatView: they render nothing, so
    one with no enabled subregions is a container (``bus master container``)."""
    empty: set[tuple[str, str, str | None]] = set()
    for b in qemu.views:
        if b.root is None:
            empty.update((a.name, a.root, a.alias) for a in b.address_spaces)
    out: dict[MemoryRegion, Observation] = {}
    for a in machine.address_spaces:
        if a.root is None:
            continue
        key = (a.name, a.root.label, a.root.alias.label if a.root.alias is not None else None)
        if key not in empty:
            continue
        # flatview_root() finds nothing below a root whose subregions are all disabled.
        mr = flatview_root(a.root) or a.root
        if (
            mr.alias is None
            and _open(mr, "kind")
            and mr.kind in (RegionKind.IO, RegionKind.CONTAINER)
            and not any(c.enabled for c in mr.subregions)
        ):
            out[mr] = Observation(
                mr, "kind", "container", f'QEMU gives address space "{a.name}" the empty FlatView'
            )
    return list(out.values())


def _gap(qv: _QemuView, lo: int, hi: int) -> int | None:
    """An address in ``[lo, hi)`` where QEMU's FlatView shows no range at all, if any.

    Only there does a region that QEMU never shows prove not to terminate: elsewhere
    something else might just cover it (a higher-priority sibling, its own children).
    """
    pos = lo
    for r in sorted(qv.overlapping(lo, hi), key=lambda r: r.start):
        if r.start > pos:
            return pos
        pos = max(pos, r.end + 1)
        if pos >= hi:
            return None
    return pos if pos < hi else None


def _observe_readonly(pairs: list[tuple[FlatView, _QemuView]]) -> list[Observation]:
    """Aliases of writable RAM, the only alias on the way to a range QEMU shows."""
    votes: dict[MemoryRegion, tuple[set[str], str]] = {}
    for view, qv in pairs:
        index = {h.start: h for h in qv.ranges}
        for r in view.ranges:
            if r.via is None or not r.via.aliases:
                continue
            for lo, _hi, visit in _parts(r):
                h = index.get(lo) if lo == r.start else None
                if (
                    h is None
                    or h.name != r.mr.label
                    or h.type_word not in ("ram", "rom")
                    or h.offset != r.offset_in_region
                ):
                    continue
                if visit is None or not visit.aliases:
                    continue
                aliases = [m for m in visit.path() if m.alias is not None]
                open_ = [m for m in aliases if _open(m, "readonly")]
                target = r.mr
                if len(open_) != 1 or len(aliases) != 1 or not target.is_ram or target.readonly:
                    continue
                mr = open_[0]
                value = "yes" if h.type_word == "rom" else "no"
                entry = votes.setdefault(
                    mr,
                    (set(), f"QEMU shows '{h.name}' ({h.type_word}) at {h.start:#x} through it"),
                )
                entry[0].add(value)
    return [
        Observation(mr, "readonly", next(iter(vals)), why)
        for mr, (vals, why) in votes.items()
        if len(vals) == 1
    ]


# -- the shipped tables ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HarvestedFact:
    """One key's agreed behaviour, with where it was seen."""

    owner_type: str
    pattern: str
    attribute: str
    value: str
    observations: int
    #: The shapes it was seen with, each with the VMs it was seen on there
    #: (``"x86_64 q35"``, ``"x86_64 q35 +e1000"``).
    shapes: tuple[tuple[Shape, tuple[str, ...]], ...]
    #: QEMU source that confirms it, where looked up (empty otherwise).
    source: str = ""

    @property
    def vms(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for _, vms in self.shapes:
            seen.update(dict.fromkeys(vms))
        return tuple(seen)

    def fits(self, shape: Shape) -> bool:
        return any(s == shape for s, _ in self.shapes)


@dataclass(frozen=True, slots=True)
class HarvestTable:
    """The harvested facts of one QEMU version."""

    version: str
    qemu: str
    facts: tuple[HarvestedFact, ...]

    @property
    def by_name(self) -> dict[tuple[str, str], list[HarvestedFact]]:
        """(pattern, attribute) -> facts, where every owner type agrees on the value."""
        return _by_name(self)

    def without_boards_of(self, arch: str) -> HarvestTable:
        """The table without any bare-machine VM of ``arch``'s family (``mips`` takes
        mipsel/mips64/mips64el along, ``arm`` aarch64, ``x86_64`` i386): what is left
        was seen on single-device VMs and on other architectures' boards only."""
        mine = arch_family(arch)
        return self.without_vms(
            vm for vm in self.vms if "+" not in vm and arch_family(vm.split()[0]) == mine
        )

    @property
    def vms(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for f in self.facts:
            seen.update(dict.fromkeys(f.vms))
        return tuple(seen)

    def without_vms(self, excluded: Iterable[str]) -> HarvestTable:
        """The table as if the ``excluded`` VMs had never been harvested."""
        gone = set(excluded)
        kept = []
        for f in self.facts:
            shapes = tuple((s, tuple(v for v in vms if v not in gone)) for s, vms in f.shapes)
            shapes = tuple((s, vms) for s, vms in shapes if vms)
            if shapes:
                kept.append(
                    HarvestedFact(
                        f.owner_type,
                        f.pattern,
                        f.attribute,
                        f.value,
                        f.observations,
                        shapes,
                        f.source,
                    )
                )
        return HarvestTable(self.version, self.qemu, tuple(kept))


def across_versions(own: HarvestTable, others: Iterable[HarvestTable]) -> HarvestTable:
    """``own`` plus the facts of ``others`` whose key ``own`` has no fact for at all.

    A fact harvested on another QEMU version was seen on a different QEMU, so it can
    never be the answer for the VM being checked; it fills only keys the version's own
    harvest is silent about (nearest version first), and its VMs are named with their
    version (``"10.0: aarch64 virt"``) so its provenance says where it came from.
    """
    known = {(f.pattern, f.attribute) for f in own.facts}
    added: list[HarvestedFact] = []
    for other in sorted(
        others,
        key=lambda t: abs(
            _version_tuple(t.version)[0] * 100
            + _version_tuple(t.version)[1]
            - _version_tuple(own.version)[0] * 100
            - _version_tuple(own.version)[1]
        ),
    ):
        fresh: set[tuple[str, str]] = set()
        for f in other.facts:
            key = (f.pattern, f.attribute)
            if key in known:
                continue
            fresh.add(key)
            shapes = tuple(
                (shape, tuple(f"{other.version}: {vm}" for vm in vms)) for shape, vms in f.shapes
            )
            added.append(
                HarvestedFact(
                    f.owner_type,
                    f.pattern,
                    f.attribute,
                    f.value,
                    f.observations,
                    shapes,
                    f.source,
                )
            )
        known |= fresh
    return HarvestTable(own.version, own.qemu, own.facts + tuple(added))


def vm_machine(vm: str) -> tuple[str, str]:
    """``(arch, machine)`` of a harvested VM's name (``"10.0: aarch64 virt +x"``)."""
    words = vm.split(": ", 1)[-1].split()
    return words[0], words[1]


def arch_family(arch: str) -> str:
    """``x86_64``/``i386`` -> ``x86``, ``aarch64``/``arm`` -> ``arm``, ``mips64el`` ->
    ``mips``: the binaries that build the same boards."""
    if arch in ("x86_64", "i386"):
        return "x86"
    if arch in ("aarch64", "arm"):
        return "arm"
    return re.sub(r"(32|64)?(el|eb|le)?$", "", arch)


@cache
def _by_name_cached(table: HarvestTable) -> dict[tuple[str, str], list[HarvestedFact]]:
    groups: dict[tuple[str, str], list[HarvestedFact]] = {}
    for f in table.facts:
        groups.setdefault((f.pattern, f.attribute), []).append(f)
    return {k: fs for k, fs in groups.items() if len({f.value for f in fs}) == 1}


def _by_name(table: HarvestTable) -> dict[tuple[str, str], list[HarvestedFact]]:
    return _by_name_cached(table)


def table_from_json(data: Mapping[str, object]) -> HarvestTable:
    """A table from its JSON form (``qmirror/rebuild/harvested/qemu-X.Y.json``)."""
    raw = data.get("facts")
    if not isinstance(raw, list):
        raise QmirrorError("harvest table: 'facts' is not a list")
    vm_names = data.get("vms")
    names = [str(v) for v in vm_names] if isinstance(vm_names, list) else []
    facts = []
    for item in raw:
        shapes = tuple(
            ((int(size), bool(kids)), tuple(names[i] for i in vms))
            for size, kids, vms in item["seen"]
        )
        facts.append(
            HarvestedFact(
                str(item["owner_type"]),
                str(item["pattern"]),
                str(item["attribute"]),
                str(item["value"]),
                int(item["observations"]),
                shapes,
                str(item.get("source", "")),
            )
        )
    return HarvestTable(str(data.get("version", "")), str(data.get("qemu", "")), tuple(facts))


def _version_tuple(text: str) -> tuple[int, int]:
    parts = [*text.split("."), "0"][:2]
    return int(parts[0]), int(parts[1])


@cache
def available_versions() -> tuple[str, ...]:
    """The versions a table ships for, oldest first."""
    root = resources.files("qmirror.rebuild") / "harvested"
    if not root.is_dir():
        return ()
    found = [
        p.name.removeprefix("qemu-").removesuffix(".json")
        for p in root.iterdir()
        if p.name.startswith("qemu-") and p.name.endswith(".json")
    ]
    return tuple(sorted(found, key=_version_tuple))


def nearest_version(wanted: tuple[int, int]) -> str | None:
    """The shipped version closest to ``wanted`` (the older one on a tie)."""
    versions = available_versions()
    if not versions:
        return None

    def distance(v: str) -> tuple[int, int]:
        major, minor = _version_tuple(v)
        return abs(major - wanted[0]) * 100 + abs(minor - wanted[1]), major

    return min(versions, key=distance)


@cache
def load_table(version: str) -> HarvestTable:
    """The shipped table of ``version`` (one of :func:`available_versions`)."""
    path = resources.files("qmirror.rebuild") / "harvested" / f"qemu-{version}.json"
    return table_from_json(json.loads(path.read_text(encoding="utf-8")))


def table_for(version: str | tuple[int, int] | None) -> HarvestTable | None:
    """The table for a QEMU version (``"7.2"``, ``(10, 0)``): its own, else the nearest."""
    if version is None:
        return None
    wanted = _version_tuple(version) if isinstance(version, str) else version
    chosen = nearest_version(wanted)
    return load_table(chosen) if chosen is not None else None


# -- applying -------------------------------------------------------------------------


def provenance(table: HarvestTable, fact: HarvestedFact) -> str:
    """How a harvested fact is shown: key, version, VMs, observations, source."""
    shown = ", ".join(fact.vms[:3]) + (f" (+{len(fact.vms) - 3} more)" if len(fact.vms) > 3 else "")
    owner = fact.owner_type or "no owner"
    text = (
        f"harvested {owner}/{fact.pattern}: seen {fact.observations}x on QEMU "
        f"{table.version} VMs {shown}"
    )
    if fact.source:
        text += f"; {fact.source}"
    return text


def _candidate(mr: MemoryRegion, attribute: str) -> bool:
    """Whether ``attribute`` of ``mr`` is still a documented default it may replace."""
    f = mr.fact(attribute)
    if f is None or f.source is not Source.DEFAULT:
        return False
    if attribute == "kind":
        return mr.alias is None and mr.kind in (RegionKind.IO, RegionKind.CONTAINER)
    if attribute == "size":
        return f.gap == "G4"
    if attribute == "readonly":
        # Observed only where it shows: on aliases of writable RAM.
        if mr.alias is None:
            return False
        target = mr.final_target()
        return target.is_ram and not target.readonly
    return False


def _set(mr: MemoryRegion, attribute: str, value: str) -> None:
    if attribute == "kind":
        mr.kind = RegionKind.IO if value == "i/o" else RegionKind.CONTAINER
    elif attribute == "readonly":
        mr.readonly = value == "yes"
    elif attribute == "size":
        mr.size = int(value)


def apply_harvest(
    machine: Machine, table: HarvestTable, owner_types: Mapping[MemoryRegion, str] | None = None
) -> list[tuple[MemoryRegion, HarvestedFact]]:
    """Fill what the text and the rules left open from ``table``.

    :param owner_types: region -> owner QOM type where known (live); otherwise a
        region is matched by name pattern where every observed owner type agrees.
    :return: the (region, fact) pairs applied.
    """
    exact: dict[tuple[str, str, str], HarvestedFact] = {}
    if owner_types:
        exact = {(f.owner_type, f.pattern, f.attribute): f for f in table.facts}
    named = table.by_name
    applied: list[tuple[MemoryRegion, HarvestedFact]] = []
    # A machine repeats names (one per device of a kind): match each name and shape once.
    patterns: dict[str, str] = {}
    best: dict[tuple[str, str, Shape], HarvestedFact | None] = {}
    shown: dict[tuple[str, str, str], str] = {}
    for mr in list(machine.regions()):
        if mr.name is None or not mr.facts:
            continue
        pattern = patterns.get(mr.name)
        if pattern is None:
            pattern = patterns[mr.name] = name_pattern(mr.name)
        shape = shape_of(mr)
        for attribute in ATTRIBUTES:
            if not _candidate(mr, attribute):
                continue
            fact = None
            if owner_types and mr in owner_types:
                fact = exact.get((owner_types[mr], pattern, attribute))
            if fact is None:
                key = (pattern, attribute, shape)
                if key in best:
                    fact = best[key]
                else:
                    fitting = [f for f in named.get((pattern, attribute), []) if f.fits(shape)]
                    fact = best[key] = (
                        max(fitting, key=lambda f: f.observations) if fitting else None
                    )
            elif not fact.fits(shape):
                fact = None
            if fact is None or (attribute == "size" and fact.value == "1"):
                continue  # size 1 is the default already; nothing to decide
            _set(mr, attribute, fact.value)
            value = "0x0" if attribute == "size" else fact.value
            said = (fact.owner_type, fact.pattern, fact.attribute)
            if said not in shown:
                shown[said] = provenance(table, fact)
            mr.set_fact(Fact(_GAP[attribute], attribute, value, Source.HARVESTED, shown[said]))
            applied.append((mr, fact))
    return applied
