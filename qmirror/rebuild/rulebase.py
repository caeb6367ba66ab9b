"""What a rule is: :class:`Rule` and the predicates rules use to tell regions apart.

The tables live in :mod:`qmirror.rebuild.rules` (x86 and the first boards) and
:mod:`qmirror.rebuild.board_rules` (boards the machine survey found).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qmirror.core.model import MemoryRegion, RegionKind


#: Dirty-log client bits of ``dirty_log_mask`` (include/exec/memory.h).
DIRTY_MEMORY_VGA = 1
DIRTY_MEMORY_CODE = 2
DIRTY_MEMORY_MIGRATION = 4


@dataclass(frozen=True, slots=True)
class Rule:
    """A sourced fact about one of QEMU's regions that the tree text does not show.

    :param id: short stable identifier, shown in reports.
    :param gap: the text gap it fills (docs/text-gaps.md).
    :param name: the region's name, or a regular expression when ``pattern`` is set;
        empty for a rule that ``when`` alone identifies (any name).
    :param attribute: ``"kind"``, ``"readonly"``, ``"size"``, ``"dirty_log_mask"`` or
        ``"order"`` (G3: ``"below NAME"``/``"above NAME"``, NAME an overlapping
        equal-priority sibling added after/before it).
    :param value: the value it sets, or a function of the region that gives it.
    :param source: QEMU source file and function that set the fact (7.2 paths).
    :param versions: QEMU versions the fact holds for.
    :param when: extra conditions that identify the region where names are shared,
        as a predicate on the region; ``None`` for none.
    """

    id: str
    gap: str
    name: str
    attribute: str
    value: object
    source: str
    versions: str
    pattern: bool = False
    when: Callable[[MemoryRegion], bool] | None = None


def shown_children(mr: MemoryRegion) -> list[MemoryRegion]:
    """Subregions other than the stand-ins a text reader puts in for hidden aliases."""
    return [c for c in mr.subregions if not (c.synthetic and c.kind is RegionKind.ALIAS)]


def leaf(mr: MemoryRegion) -> bool:
    return not shown_children(mr)


def has_children(mr: MemoryRegion) -> bool:
    return bool(shown_children(mr))


def printed_empty(mr: MemoryRegion) -> bool:
    """Printed ``X-X``: size 0 or 1 (G4)."""
    f = mr.fact("size")
    return f is not None and f.gap == "G4"


def target_read_only(mr: MemoryRegion) -> bool:
    return mr.alias is not None and mr.final_target().readonly


CONTAINER = RegionKind.CONTAINER
IO = RegionKind.IO
