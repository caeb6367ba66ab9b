"""Sourced rules about region identity that a pre-7.0 tree text cannot show.

Before 7.0, ``info mtree`` printed one block per address space, so two address spaces
whose roots are different regions with the same name, owner and subregions print
alike, and the rebuild reads them as one shared root (G5). QEMU gives address spaces
with different roots different FlatViews, so the difference shows in ``-f``. Where
QEMU's source says that each address space of a family is built on a root of its
own, a rule gives each its own copy from the tree text alone; elsewhere only the
``-f`` can (:func:`qmirror.rebuild.gaps.split_shared_roots`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from qmirror.core.model import AddressSpace, Fact, Machine, MemoryRegion, Source


@dataclass(frozen=True, slots=True)
class OwnRootRule:
    """Every address space whose name matches ``spaces`` has a root of its own, named
    ``root``.

    :param source: QEMU source file and function that build the roots.
    """

    id: str
    spaces: re.Pattern[str]
    root: str
    source: str


OWN_ROOT_RULES: tuple[OwnRootRule, ...] = (
    OwnRootRule(
        "cpu-smm-own-root",
        re.compile(r"cpu-smm-\d+"),
        "memory",
        "target/i386/cpu.c x86_cpu_realizefn (5.2; tcg_cpu_realizefn in later versions): "
        "each CPU creates its own 'memory' container (cpu_as_root) and builds its "
        "cpu-smm address space on it; KVM's shared SMM root has another name",
    ),
    OwnRootRule(
        "amdvi-own-root",
        re.compile(r"amd_iommu_devfn_\d+"),
        "amdvi_root",
        "hw/i386/amd_iommu.c amdvi_host_dma_iommu: one 'amdvi_root' container per "
        "devfn, the root of that devfn's address space only",
    ),
)


def split_own_roots(
    machine: Machine, rules: tuple[OwnRootRule, ...] = OWN_ROOT_RULES
) -> list[Fact]:
    """Give each address space a rule names a copy of the root it was read to share.

    Call it only for trees printed one block per address space (before 7.0): in later
    texts a shared root is printed once under several headers, which is what it is.

    :return: one fact per copy made, on the copy's root.
    """
    by_root: dict[MemoryRegion, list[AddressSpace]] = {}
    for space in machine.address_spaces:
        if space.root is not None:
            by_root.setdefault(space.root, []).append(space)
    made: list[Fact] = []
    for root, spaces in by_root.items():
        for rule in rules:
            if root.name != rule.root:
                continue
            mine = [s for s in spaces if rule.spaces.fullmatch(s.name)]
            for space in mine[1:]:
                copy = copy_subtree(root, None)
                copy.set_fact(
                    Fact(
                        "G5",
                        "identity",
                        "own region",
                        Source.RULE,
                        f"rule {rule.id}: {rule.source}",
                    )
                )
                made.append(copy.facts[-1])
                space.root = copy
    return made


def copy_subtree(mr: MemoryRegion, container: MemoryRegion | None) -> MemoryRegion:
    """A copy of *mr* and its subregions; alias targets stay shared."""
    copy = replace(
        mr, subregions=[], container=container, facts=list(mr.facts), ioeventfds=list(mr.ioeventfds)
    )
    copy.subregions = [copy_subtree(c, copy) for c in mr.subregions]
    return copy
