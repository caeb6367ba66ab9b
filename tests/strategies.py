"""Hypothesis strategies: random MemoryRegion trees built in code with :mod:`qmirror.core.model`.

A drawn tree is returned as :class:`Drawn`: the :class:`~qmirror.core.model.Machine` plus
the Python statements that rebuild it, so a failing (shrunk) example prints as code
that can be pasted into a test.

Regions are created from the last to the first; a region's subregions and its alias
target are always regions created before it (later in the list), so the graph of
"contains or aliases" edges has no cycle and QEMU could have built every tree drawn
here. The draw covers what the renderer must get right: aliases (also of aliases,
of mapped regions and of containers, with offsets beyond the target), overlaps at
equal and different priorities (negative and int32 extremes), sizes 0, 1 and 2**64,
addresses near 2**64 (windows clipped at the top, printed overflows), disabled
subtrees, readonly/nonvolatile anywhere on a path, ROM devices in and out of ROMD
mode, dirty-log masks, and address spaces whose roots are mapped regions or aliases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from qmirror.core.model import (
    MASK64,
    SIZE_2_64,
    AddressSpace,
    Machine,
    MemoryRegion,
    ObjectRef,
    Ownership,
    RegionKind,
)


SIZES = st.one_of(
    st.sampled_from([0x1000, 0x800, 0x2000, 1, 0, 0x10, 0x100, 0x3000, SIZE_2_64]),
    st.integers(1, 0x4000),
)
ADDRS = st.one_of(
    st.sampled_from([0, 0x800, 0x1000, 0x1800, 0x2000, 0x10, 0xFFF]),
    st.integers(0, 0x3000),
    st.integers(0, 0x2000).map(lambda a: a & ~0xFF),
    st.sampled_from([MASK64 - 0xFFF, MASK64 - 0x7FF, MASK64, 1 << 63]),
)
PRIORITIES = st.one_of(st.integers(-2, 2), st.sampled_from([-(2**31), 2**31 - 1]))
KINDS = st.sampled_from(
    [
        RegionKind.IO,
        RegionKind.CONTAINER,
        RegionKind.RAM,
        RegionKind.ALIAS,
        RegionKind.ROM,
        RegionKind.ROMD,
        RegionKind.RAMD,
        RegionKind.IOMMU,
    ]
)
#: Names repeat on purpose (QEMU's do); ``None`` prints ``(null)``.
NAMES = st.sampled_from(["a", "b", "c", "pci", "sys ram", "pam-pci", "io", None])
OWNERS = st.sampled_from(
    [
        Ownership(None, None),
        Ownership(ObjectRef(True, "id", "nic0"), None),
        Ownership(ObjectRef(True, "type", "e1000"), ObjectRef(False, "path", "/machine")),
        Ownership(ObjectRef(False, "path", "/machine/unattached"), None),
    ]
)


def rarely(p_in_ten: int = 1) -> st.SearchStrategy[bool]:
    """True about ``p_in_ten`` times in ten; shrinks to False."""
    return st.integers(0, 9).map(lambda x: x >= 10 - p_in_ten)


@dataclass(eq=False)
class Drawn:
    """A drawn machine and the code that rebuilds it (its repr, for failure reports)."""

    machine: Machine
    regions: list[MemoryRegion]
    code: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return "\n" + "\n".join(self.code) + "\n"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # Hypothesis pretty-prints dataclasses field by field; the code is what helps.
        p.text(repr(self))


def _hex(n: int) -> str:
    return "SIZE_2_64" if n == SIZE_2_64 else hex(n)


@st.composite
def machines(
    draw: st.DrawFn,
    *,
    max_regions: int = 10,
    max_spaces: int = 3,
    names: st.SearchStrategy[str | None] = NAMES,
    disabled: bool = True,
    null_roots: bool = True,
) -> Drawn:
    """A random machine; see the module docstring for what it covers.

    :param names: the name of each region (repeats allowed).
    :param disabled: whether regions may be disabled.
    :param null_roots: whether an address space may have no root (destroyed; QEMU
        never prints one, so texts cannot carry it).
    """
    n = draw(st.integers(1, max_regions))
    regions: list[MemoryRegion] = []  # built back to front, reversed at the end
    code: list[str] = []
    for k in reversed(range(n)):
        later = regions  # regions k+1 .. n-1, in reverse
        kind = draw(KINDS)
        free = [r for r in later if r.container is None]
        if (kind is RegionKind.ALIAS and not later) or (kind is RegionKind.CONTAINER and not free):
            kind = RegionKind.IO  # nothing to alias or to contain
        size = draw(SIZES)
        if k == 0 and free and draw(st.booleans()):
            # Most real roots are whole-space containers (system, io, bus master).
            kind, size = RegionKind.CONTAINER, SIZE_2_64
        name = draw(names)
        enabled = not (disabled and draw(rarely()))
        readonly = draw(rarely())
        nonvolatile = draw(rarely())
        romd_mode = not draw(rarely(3)) if kind is RegionKind.ROMD else True
        mask = draw(st.sampled_from([0, 0, 1, 2, 4, 7])) if kind.is_ram else 0
        ownership = draw(OWNERS)
        target: MemoryRegion | None = None
        offset = 0
        if kind is RegionKind.ALIAS:
            target = draw(st.sampled_from(later))
            offset = draw(ADDRS)
        mr = MemoryRegion(
            name,
            kind,
            size,
            enabled=enabled,
            readonly=readonly,
            nonvolatile=nonvolatile,
            romd_mode=romd_mode,
            alias=target,
            alias_offset=offset,
            ownership=ownership,
            dirty_log_mask=mask,
        )
        var = f"r{k}"
        extra = "".join(
            [
                "" if enabled else ", enabled=False",
                ", readonly=True" if readonly else "",
                ", nonvolatile=True" if nonvolatile else "",
                "" if romd_mode else ", romd_mode=False",
                f", dirty_log_mask={mask}" if mask else "",
            ]
        )
        if target is not None:
            t = f"r{n - 1 - later.index(target)}"
            code.append(f"{var} = alias({name!r}, {t}, {_hex(offset)}, {_hex(size)}{extra})")
        else:
            code.append(
                f"{var} = MemoryRegion({name!r}, RegionKind.{kind.name}, {_hex(size)}{extra})"
            )
        if kind is not RegionKind.ALIAS and free:
            # An empty container is dull: give containers at least one child.
            least = min(len(free), 3 if k == 0 else 1 if kind is RegionKind.CONTAINER else 0)
            picks = draw(st.lists(st.sampled_from(free), unique_by=id, min_size=least, max_size=5))
            for child in picks:
                addr = draw(ADDRS)
                prio = draw(PRIORITIES)
                mr.add_subregion(child, addr, prio)
                c = f"r{n - 1 - later.index(child)}"
                code.append(f"{var}.add_subregion({c}, {_hex(addr)}, {prio})")
        regions.append(mr)
    regions.reverse()
    spaces = [AddressSpace("memory", regions[0])]
    code.append("m = Machine([AddressSpace('memory', r0)")
    for _ in range(draw(st.integers(0, max_spaces - 1))):
        choice = st.sampled_from(regions)
        root = draw(st.one_of(st.none(), choice) if null_roots else choice)
        as_name = draw(st.sampled_from(["io", "cpu-memory-0", "memory", "dma"]))
        spaces.append(AddressSpace(as_name, root))
        r = "None" if root is None else f"r{regions.index(root)}"
        code[-1] += f", AddressSpace({as_name!r}, {r})"
    code[-1] += "])"
    return Drawn(Machine(spaces), regions, code)
