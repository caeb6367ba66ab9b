"""The MemoryRegion model: regions, address spaces and the machine that holds them.

This mirrors QEMU's object model (reference §1) closely enough to render FlatViews
with QEMU's algorithm and to print ``info mtree`` byte for byte:

* a region's *kind* says how it was created (``memory_region_init_*``); QEMU keeps
  this as a handful of flags, we keep the kind and derive the flags;
* identity is the Python object, never the name: names repeat and contain spaces;
* a container keeps its subregions in QEMU's list order: priority descending and,
  among equal priorities, the most recently added first (reference §1.3);
* sizes are unbounded ints in ``[0, 2**64]``; addresses, bases and offsets are
  unbounded too (aliases produce negative bases) and are reduced modulo 2**64
  only where QEMU prints them.

Attributes that the ``info mtree`` text does not carry (docs/text-gaps.md) are recorded
per region in :attr:`MemoryRegion.facts` with where they came from.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from qmirror.errors import ModelError


#: 2**64: the only size beyond 64 bits a region can have (``UINT64_MAX`` at init).
SIZE_2_64 = 1 << 64
#: Reduce an address the way QEMU's 64-bit ``hwaddr`` arithmetic does.
MASK64 = SIZE_2_64 - 1


class RegionKind(enum.Enum):
    """How a region was created; decides what it renders and how it prints."""

    #: ``memory_region_init``: transparent where it has no children.
    CONTAINER = "container"
    #: ``memory_region_init_io``: MMIO or PIO callbacks; fills its own holes.
    IO = "i/o"
    #: ``memory_region_init_ram*``.
    RAM = "ram"
    #: ``memory_region_init_rom*``: RAM that starts read-only.
    ROM = "rom"
    #: ``memory_region_init_rom_device*``: a ROM device (``romd`` while in ROMD mode).
    ROMD = "romd"
    #: ``memory_region_init_ram_device_ptr``: a RAM device (VFIO BAR mmaps).
    RAMD = "ramd"
    #: ``memory_region_init_alias``.
    ALIAS = "alias"
    #: ``memory_region_init_iommu``.
    IOMMU = "iommu"

    @property
    def terminates(self) -> bool:
        """Whether a region of this kind produces FlatRanges itself."""
        return self not in (RegionKind.CONTAINER, RegionKind.ALIAS)

    @property
    def is_ram(self) -> bool:
        """QEMU's ``mr->ram``: backed by a RAMBlock that the guest accesses directly."""
        return self in (RegionKind.RAM, RegionKind.ROM, RegionKind.RAMD)


class Source(enum.Enum):
    """Where a fact about a region came from, in the order qmirror tries them."""

    TEXT = "text"  # read from the `info mtree` text itself
    RULE = "rule"  # a sourced rule about one of QEMU's devices
    HARVESTED = "harvested"  # observed on the same QEMU version (qmirror.rebuild.harvest)
    INFERRED = "inferred"  # inferred from QEMU's other output (`-f`)
    DEFAULT = "default"  # a documented default


@dataclass(frozen=True, slots=True)
class Fact:
    """One attribute of a region that the tree text did not say, and its origin.

    :param gap: the text gap it fills (``"G1"`` … ``"G9"``, docs/text-gaps.md).
    :param attribute: the model attribute decided (``"kind"``, ``"readonly"``, …).
    :param value: the value chosen, as shown to users.
    :param source: where it came from.
    :param detail: the rule's id and QEMU source, the evidence, or the default's wording.
    """

    gap: str
    attribute: str
    value: str
    source: Source
    detail: str


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A QOM object as ``info mtree -o`` names it: ``{dev id=nic0}``, ``{obj path=/machine}``."""

    is_device: bool
    key: str  # "id", "path" or "type"
    value: str


@dataclass(frozen=True, slots=True)
class Ownership:
    """A region's owner and QOM parent as printed by ``-o``; both ``None`` prints ``orphan``."""

    owner: ObjectRef | None
    parent: ObjectRef | None


@dataclass(frozen=True, slots=True)
class IOEventFD:
    """One ioeventfd (QEMU's ``MemoryRegionIoeventfd``, reference §5.4).

    On a region (:attr:`MemoryRegion.ioeventfds`) ``start`` is region-relative; in an
    address space's list it is absolute.
    """

    start: int
    #: 0 matches any access width (``memory_region_del_eventfd`` treats it as a wildcard).
    size: int
    match_data: bool
    data: int
    #: Stands in for QEMU's EventNotifier pointer: compared last, by value here.
    notifier: int

    def sort_key(self) -> tuple[int, int, bool, int, int]:
        """QEMU's ``memory_region_ioeventfd_before`` order: start, size, match_data,
        then data (only when matching), then the notifier."""
        return (
            self.start,
            self.size,
            self.match_data,
            self.data if self.match_data else 0,
            self.notifier,
        )


@dataclass(eq=False, slots=True)
class MemoryRegion:
    """One MemoryRegion. Compared and hashed by identity."""

    name: str | None
    kind: RegionKind
    size: int
    #: Offset inside the container; kept after removal like QEMU does.
    addr: int = 0
    #: Written when the region is added to a container; stale afterwards.
    priority: int = 0
    enabled: bool = True
    readonly: bool = False
    nonvolatile: bool = False
    #: ROM devices only: True while reads go straight to the RAMBlock.
    romd_mode: bool = True
    alias: MemoryRegion | None = None
    alias_offset: int = 0
    #: Owner and QOM parent as ``-o`` prints them; ``None`` when unknown.
    ownership: Ownership | None = None
    #: Dirty-log clients (bit set of VGA=1, CODE=2, MIGRATION=4) enabled on the region.
    dirty_log_mask: int = 0
    #: Registered ioeventfds, region-relative, in QEMU's sorted order (reference §5.4).
    #: An empty tuple shared by the many regions without any (issue 13: memory).
    ioeventfds: Sequence[IOEventFD] = field(default=(), repr=False)
    container: MemoryRegion | None = field(default=None, repr=False)
    #: QEMU's list order: priority descending, newest first among equals.
    subregions: list[MemoryRegion] = field(default_factory=list, repr=False)
    #: A stand-in for a region the text hides (a disabled parent without ``-D``).
    synthetic: bool = False
    #: ``[DETECTED OVERFLOW!]`` markers a hidden synthetic region leaves on the next line.
    hidden_overflow_markers: int = 0
    #: Attributes not read from the text, with their origin (see :class:`Fact`).
    facts: list[Fact] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.size <= SIZE_2_64:
            raise ModelError(f"region {self.label}: size {self.size:#x} outside [0, 2**64]")
        if self.kind is RegionKind.ROM and not self.readonly:
            # ROM is RAM that starts read-only; `set_readonly(False)` may clear it later.
            self.readonly = True

    # -- identity and naming ------------------------------------------------

    @property
    def label(self) -> str:
        """The name as QEMU prints it (``(null)`` for an unnamed region)."""
        return "(null)" if self.name is None else self.name

    def __repr__(self) -> str:
        return f"<MemoryRegion {self.label!r} {self.kind.value} @{self.addr:#x}+{self.size:#x}>"

    # -- derived flags ------------------------------------------------------

    @property
    def terminates(self) -> bool:
        return self.kind.terminates

    @property
    def is_ram(self) -> bool:
        return self.kind.is_ram

    def final_target(self) -> MemoryRegion:
        """Follow the alias chain to the region that is not an alias.

        :raise ModelError: the chain loops (QEMU would hang here; we refuse).
        """
        mr = self
        seen: set[MemoryRegion] = set()
        while mr.alias is not None:
            if mr in seen:
                raise ModelError(f"alias loop through {mr.label!r}")
            seen.add(mr)
            mr = mr.alias
        return mr

    def type_word(self, *, container_word: bool = False) -> str:
        """The type word of tree lines (``memory_region_type``; reference §1.1).

        :param container_word: upstream 2026 behaviour: ``container`` for a region
            that is not RAM-like and is not mapped in a container (reference §4.8).
        """
        mr = self.final_target()
        if mr.kind is RegionKind.RAMD:
            return "ramd"
        if mr.kind is RegionKind.ROMD and mr.romd_mode:
            return "romd"
        if mr.is_ram:
            return "rom" if mr.readonly else "ram"
        if container_word and mr.container is None:
            return "container"
        return "i/o"

    # -- structure ----------------------------------------------------------

    def add_subregion(self, child: MemoryRegion, offset: int, priority: int = 0) -> None:
        """Map ``child`` at ``offset`` the way ``memory_region_add_subregion_overlap`` does.

        The child goes in front of the first sibling whose priority is ``<=`` its own,
        so the list stays priority-descending with the newest first among equals.
        """
        if child.container is not None:
            raise ModelError(f"{child.label!r} is already mapped in {child.container.label!r}")
        # Reliability fix (issue 6): a region inside itself would make every tree walk
        # (render, print) endless; QEMU has no such check, so refuse it here.
        up: MemoryRegion | None = self
        while up is not None:
            if up is child:
                raise ModelError(
                    f"mapping {child.label!r} into {self.label!r} would put it "
                    "inside itself (a container cycle)"
                )
            up = up.container
        child.container = self
        child.addr = offset
        child.priority = priority
        subs = self.subregions
        for i, other in enumerate(subs):
            if priority >= other.priority:
                subs.insert(i, child)
                return
        subs.append(child)

    def del_subregion(self, child: MemoryRegion) -> None:
        """Unmap ``child``; its ``addr`` and ``priority`` stay as they were."""
        if child.container is not self:
            raise ModelError(f"{child.label!r} is not a subregion of {self.label!r}")
        self.subregions.remove(child)
        child.container = None

    def walk(self) -> Iterator[MemoryRegion]:
        """This region and its subregions, depth first in list order (aliases not followed)."""
        stack = [self]
        while stack:
            mr = stack.pop()
            yield mr
            stack.extend(reversed(mr.subregions))

    def fact(self, attribute: str) -> Fact | None:
        """The recorded origin of ``attribute``, if it was not read from the text."""
        for f in self.facts:
            if f.attribute == attribute:
                return f
        return None

    def set_fact(self, fact: Fact) -> None:
        """Record (or replace) the origin of one attribute."""
        self.facts = [f for f in self.facts if f.attribute != fact.attribute]
        self.facts.append(fact)

    def path(self) -> list[MemoryRegion]:
        """The chain of containers from the outermost one down to this region."""
        chain = [self]
        seen = {self}
        up = self.container
        while up is not None:
            if up in seen:
                raise ModelError(f"container cycle through {up.label!r}")
            seen.add(up)
            chain.append(up)
            up = up.container
        chain.reverse()
        return chain


def ram(name: str | None, size: int, **kw: Any) -> MemoryRegion:
    """A RAM region (``memory_region_init_ram``)."""
    return MemoryRegion(name, RegionKind.RAM, size, **kw)


def rom(name: str | None, size: int, **kw: Any) -> MemoryRegion:
    """A ROM region (``memory_region_init_rom``)."""
    return MemoryRegion(name, RegionKind.ROM, size, **kw)


def io(name: str | None, size: int, **kw: Any) -> MemoryRegion:
    """An MMIO/PIO region (``memory_region_init_io``)."""
    return MemoryRegion(name, RegionKind.IO, size, **kw)


def container(name: str | None, size: int, **kw: Any) -> MemoryRegion:
    """A pure container (``memory_region_init``)."""
    return MemoryRegion(name, RegionKind.CONTAINER, size, **kw)


def alias(
    name: str | None, target: MemoryRegion, offset: int, size: int, **kw: Any
) -> MemoryRegion:
    """An alias of ``target`` starting at ``offset`` (``memory_region_init_alias``)."""
    return MemoryRegion(name, RegionKind.ALIAS, size, alias=target, alias_offset=offset, **kw)


#: How ``info mtree`` names an address space: (name, root region, the root's alias
#: target or ``None``); a root that is gone is ``"(null)"``. Keys built from it:
#: :data:`qmirror.sim.topology.ASKey` (one address space across readings) and
#: :data:`qmirror.rebuild.gaps.ViewKey` (one FlatView: its address spaces).
ASIdent = tuple[str, str, str | None]


@dataclass(eq=False, slots=True)
class AddressSpace:
    """An AddressSpace: a name (not unique) and a root region (``None`` once destroyed)."""

    name: str
    root: MemoryRegion | None

    def ident(self) -> ASIdent:
        """(name, root, root's alias target) as ``info mtree`` prints them."""
        root = self.root
        if root is None:
            return (self.name, "(null)", None)
        return (self.name, root.label, root.alias.label if root.alias is not None else None)

    def __repr__(self) -> str:
        root = "None" if self.root is None else repr(self.root.label)
        return f"<AddressSpace {self.name!r} root={root}>"


@dataclass(eq=False)
class Machine:
    """The memory state of one QEMU: its address spaces in creation order.

    :param address_spaces: in QEMU's creation order (the global list order).
    :param tree_order: the order QEMU printed the address-space groups of a parsed
        tree (their roots); hash order in QEMU, so only known from text. ``None``
        means "print in a deterministic order of our own" (first AS to use a root).
    :param accel: ``"kvm"``, ``"tcg"`` or ``None`` when not known.
    :param facts: machine-wide facts not read from the tree (G7 accelerator, G9 order).
    """

    address_spaces: list[AddressSpace] = field(default_factory=list)
    tree_order: list[MemoryRegion | None] | None = None
    accel: str | None = None
    facts: list[Fact] = field(default_factory=list)

    def regions(self) -> Iterator[MemoryRegion]:
        """Every region reachable from an address space, through subregions and aliases.

        Each region once, in a deterministic depth-first order.
        """
        seen: set[MemoryRegion] = set()
        stack: list[MemoryRegion] = [
            a.root for a in reversed(self.address_spaces) if a.root is not None
        ]
        while stack:
            mr = stack.pop()
            if mr in seen:
                continue
            seen.add(mr)
            yield mr
            if mr.alias is not None:
                stack.append(mr.alias)
            stack.extend(reversed(mr.subregions))

    def set_fact(self, fact: Fact) -> None:
        """Record (or replace) a machine-wide fact."""
        self.facts = [f for f in self.facts if f.attribute != fact.attribute]
        self.facts.append(fact)

    def check(self, *, containers: bool = True) -> None:
        """Refuse models QEMU would hang on or cannot have.

        :param containers: also look for container cycles (a model read from text has
            none by construction).
        :raise ModelError: an alias loop or container cycle (naming the region where
            it closes), or an alias without a target.
        """
        # Reliability fix (issue 6): each chain is followed only up to a region already
        # known to end well, so 10k-deep trees and alias chains cost linear, not
        # quadratic, time (a per-region final_target()/path() did).
        ends_alias: set[MemoryRegion] = set()
        ends_container: set[MemoryRegion] = set()
        for mr in self.regions():
            if (mr.alias is not None) != (mr.kind is RegionKind.ALIAS):
                raise ModelError(f"region {mr.label!r}: only aliases, all of them, have a target")
            # Most aliases point at a region that is not one: no chain to follow.
            if mr.alias is not None and mr.alias.alias is not None:
                _chain_ends(mr, lambda r: r.alias, ends_alias, "alias loop through")
            if containers:
                _chain_ends(mr, lambda r: r.container, ends_container, "container cycle through")


def _chain_ends(
    start: MemoryRegion,
    step: Callable[[MemoryRegion], MemoryRegion | None],
    ends: set[MemoryRegion],
    what: str,
) -> None:
    """Follow ``step`` from ``start`` until it ends or meets a region in ``ends``.

    Every region walked joins ``ends``, so over many calls each is walked once.

    :raise ModelError: the chain comes back to a region walked in this call.
    """
    walked: list[MemoryRegion] = []
    on_walk: set[MemoryRegion] = set()
    mr: MemoryRegion | None = start
    while mr is not None and mr not in ends:
        if mr in on_walk:
            raise ModelError(f"{what} {mr.label!r}")
        on_walk.add(mr)
        walked.append(mr)
        mr = step(mr)
    ends.update(walked)


def kind_word(mr: MemoryRegion) -> str:
    """What a region is, as decided (not only as printed): ``container`` is told apart
    from ``i/o`` and a read-only RAM region is ``rom``."""
    kind = mr.kind
    if kind is RegionKind.ALIAS:
        return "alias"
    if kind is RegionKind.RAM and mr.readonly:
        return "rom"
    if kind is RegionKind.ROMD and not mr.romd_mode:
        return "i/o"
    return str(kind.value)
