"""The model as JSON: a :class:`~qmirror.core.model.Machine` written out and read back. Pure.

Schema ``qmirror.model/1`` (one JSON object)::

    {
      "schema": "qmirror.model/1",
      "accel": "tcg" | "kvm" | null,            # G7, when known
      "facts": [FACT, ...],                     # machine-wide facts (G7, G9, ...)
      "address_spaces": [                       # QEMU's creation order
        {"name": "memory", "root": "r0"}, ...   # root: a region id, or null
      ],
      "tree_order": ["r0", "r7", null, ...] | null,   # QEMU's tree block order, if known
      "regions": [REGION, ...]
    }

    REGION = {
      "id": "r12",                  # stable for a given model: depth-first order
      "name": "pci" | null,         # null: an unnamed region (QEMU prints "(null)")
      "kind": "container" | "i/o" | "ram" | "rom" | "romd" | "ramd" | "alias" | "iommu",
      "addr": "0x%016x",            # offset in its container (kept after unmapping)
      "size": "0x%016x",            # 2**64 is "0x10000000000000000"
      "priority": 1,                # a plain integer: QEMU's priority is a signed int
      "enabled": true, "readonly": false, "nonvolatile": false, "romd_mode": true,
      "alias": "r3" | null,         # alias target's id
      "alias_offset": "0x%016x",
      "ownership": {"owner": OBJ | null, "parent": OBJ | null} | null,   # from -o
      "dirty_log_mask": 0,
      "container": "r2" | null,
      "subregions": ["r13", ...],   # QEMU's list order: priority descending, newest first
      "synthetic": false,           # a stand-in for a region the text hides
      "hidden_overflow_markers": 0,
      "facts": [FACT, ...]          # attributes not read from the text, with provenance
    }
    OBJ  = {"device": true, "key": "id" | "path" | "type", "value": "nic0"}
    FACT = {"gap": "G1", "attribute": "kind", "value": "i/o", "source":
            "text" | "rule" | "harvested" | "inferred" | "default", "detail": "..."}

Addresses, sizes and offsets are ``"0x%016x"`` strings (64-bit values do not survive
JSON readers that use doubles); a negative value (alias arithmetic can make one) is
written ``"-0x..."``. Priorities and masks are small integers and stay numbers.
:func:`machine_from_json` rebuilds an equal model: same regions, same subregion order,
same facts, so it prints and renders exactly as the original.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from qmirror.core.model import (
    AddressSpace,
    Fact,
    Machine,
    MemoryRegion,
    ObjectRef,
    Ownership,
    RegionKind,
    Source,
)
from qmirror.core.units import hexs
from qmirror.errors import ModelError


__all__ = ["SCHEMA", "hex_or_neg", "machine_from_json", "machine_to_json"]

SCHEMA = "qmirror.model/1"

_HEX = re.compile(r"\A-?0x[0-9a-fA-F]+\Z")


def hex_or_neg(value: int) -> str:
    """``"0x%016x"``, or ``"-0x%016x"`` for a negative value."""
    return hexs(value) if value >= 0 else f"-{hexs(-value)}"


def _all_regions(machine: Machine) -> Iterator[MemoryRegion]:
    """Every region the model reaches (subregions, alias targets and containers), once,
    depth first from the address-space roots in creation order."""
    seeds: list[MemoryRegion] = [a.root for a in machine.address_spaces if a.root is not None]
    seeds += [r for r in machine.tree_order or () if r is not None]
    seen: set[MemoryRegion] = set()
    stack = list(reversed(seeds))
    while stack:
        mr = stack.pop()
        if mr in seen:
            continue
        seen.add(mr)
        yield mr
        more = list(mr.subregions)
        if mr.alias is not None:
            more.append(mr.alias)
        if mr.container is not None:
            more.append(mr.container)
        stack.extend(reversed(more))


def _fact_json(f: Fact) -> dict[str, str]:
    return {
        "gap": f.gap,
        "attribute": f.attribute,
        "value": f.value,
        "source": f.source.value,
        "detail": f.detail,
    }


def _obj_json(o: ObjectRef | None) -> dict[str, Any] | None:
    return None if o is None else {"device": o.is_device, "key": o.key, "value": o.value}


def machine_to_json(machine: Machine) -> dict[str, Any]:
    """The JSON document (schema ``qmirror.model/1``) of a model."""
    regions = list(_all_regions(machine))
    ids = {mr: f"r{n}" for n, mr in enumerate(regions)}

    def ref(mr: MemoryRegion | None) -> str | None:
        return None if mr is None else ids[mr]

    out: list[dict[str, Any]] = []
    for mr in regions:
        own = mr.ownership
        out.append(
            {
                "id": ids[mr],
                "name": mr.name,
                "kind": mr.kind.value,
                "addr": hex_or_neg(mr.addr),
                "size": hex_or_neg(mr.size),
                "priority": mr.priority,
                "enabled": mr.enabled,
                "readonly": mr.readonly,
                "nonvolatile": mr.nonvolatile,
                "romd_mode": mr.romd_mode,
                "alias": ref(mr.alias),
                "alias_offset": hex_or_neg(mr.alias_offset),
                "ownership": None
                if own is None
                else {"owner": _obj_json(own.owner), "parent": _obj_json(own.parent)},
                "dirty_log_mask": mr.dirty_log_mask,
                "container": ref(mr.container),
                "subregions": [ids[c] for c in mr.subregions],
                "synthetic": mr.synthetic,
                "hidden_overflow_markers": mr.hidden_overflow_markers,
                "facts": [_fact_json(f) for f in mr.facts],
            }
        )
    return {
        "schema": SCHEMA,
        "accel": machine.accel,
        "facts": [_fact_json(f) for f in machine.facts],
        "address_spaces": [{"name": a.name, "root": ref(a.root)} for a in machine.address_spaces],
        "tree_order": None if machine.tree_order is None else [ref(r) for r in machine.tree_order],
        "regions": out,
    }


# -- reading back ---------------------------------------------------------------------


class _Reader:
    """Typed access to a JSON object, with errors that say where."""

    def __init__(self, obj: object, where: str) -> None:
        if not isinstance(obj, Mapping):
            raise ModelError(f"model JSON: {where} is not an object")
        self.obj = obj
        self.where = where

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        if key not in self.obj:
            if optional:
                return None
            raise ModelError(f"model JSON: {self.where} has no {key!r}")
        value = self.obj[key]
        if value is None and optional:
            return None
        # bool is an int in Python: keep them apart.
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ModelError(f"model JSON: {self.where}.{key} is {value!r}")
        if not isinstance(value, kind):
            raise ModelError(f"model JSON: {self.where}.{key} is {value!r}")
        return value

    def number(self, key: str) -> int:
        text = self.get(key, str)
        if not _HEX.match(text):
            raise ModelError(
                f'model JSON: {self.where}.{key} is not a hex number ("0x..."): {text!r}'
            )
        return int(text, 16)


def _fact(obj: object, where: str) -> Fact:
    r = _Reader(obj, where)
    try:
        source = Source(r.get("source", str))
    except ValueError as err:
        raise ModelError(f"model JSON: {where}.source is {r.obj['source']!r}") from err
    return Fact(
        r.get("gap", str),
        r.get("attribute", str),
        r.get("value", str),
        source,
        r.get("detail", str),
    )


def _obj(obj: object, where: str) -> ObjectRef | None:
    if obj is None:
        return None
    r = _Reader(obj, where)
    return ObjectRef(r.get("device", bool), r.get("key", str), r.get("value", str))


def machine_from_json(doc: object) -> Machine:
    """Rebuild a model from :func:`machine_to_json`'s document.

    :raise ModelError: the document is not a ``qmirror.model/1`` model, naming the
        member that is wrong.
    """
    top = _Reader(doc, "model")
    if top.get("schema", str) != SCHEMA:
        raise ModelError(f"model JSON: schema is {top.obj['schema']!r}, expected {SCHEMA!r}")
    entries = [_Reader(e, f"regions[{n}]") for n, e in enumerate(top.get("regions", list))]
    by_id: dict[str, MemoryRegion] = {}
    for r in entries:
        rid = r.get("id", str)
        if rid in by_id:
            raise ModelError(f"model JSON: {r.where}: duplicate id {rid!r}")
        try:
            kind = RegionKind(r.get("kind", str))
        except ValueError as err:
            raise ModelError(f"model JSON: {r.where}.kind is {r.obj['kind']!r}") from err
        own = r.get("ownership", Mapping, optional=True)
        ownership = None
        if own is not None:
            o = _Reader(own, f"{r.where}.ownership")
            ownership = Ownership(
                _obj(o.obj.get("owner"), f"{o.where}.owner"),
                _obj(o.obj.get("parent"), f"{o.where}.parent"),
            )
        mr = MemoryRegion(
            r.get("name", str, optional=True),
            kind,
            r.number("size"),
            addr=r.number("addr"),
            priority=r.get("priority", int),
            enabled=r.get("enabled", bool),
            readonly=r.get("readonly", bool),
            nonvolatile=r.get("nonvolatile", bool),
            romd_mode=r.get("romd_mode", bool),
            alias_offset=r.number("alias_offset"),
            ownership=ownership,
            dirty_log_mask=r.get("dirty_log_mask", int),
            synthetic=r.get("synthetic", bool),
            hidden_overflow_markers=r.get("hidden_overflow_markers", int),
            facts=[_fact(f, f"{r.where}.facts[{k}]") for k, f in enumerate(r.get("facts", list))],
        )
        # __post_init__ forces ROM read-only; the JSON says what it really was.
        mr.readonly = r.get("readonly", bool)
        by_id[rid] = mr

    def find(ref: object, where: str) -> MemoryRegion | None:
        if ref is None:
            return None
        if not isinstance(ref, str) or ref not in by_id:
            raise ModelError(f"model JSON: {where} refers to unknown region {ref!r}")
        return by_id[ref]

    for r in entries:
        mr = by_id[r.obj["id"]]
        mr.alias = find(r.obj.get("alias"), f"{r.where}.alias")
        mr.container = find(r.obj.get("container"), f"{r.where}.container")
        subs = r.get("subregions", list)
        # Assigned as a list, not through add_subregion: the order and the (possibly
        # stale) priorities are QEMU's, exactly as written.
        mr.subregions = [
            c
            for k, ref in enumerate(subs)
            if (c := find(ref, f"{r.where}.subregions[{k}]")) is not None
        ]
    spaces = []
    for n, a in enumerate(top.get("address_spaces", list)):
        ar = _Reader(a, f"address_spaces[{n}]")
        spaces.append(
            AddressSpace(ar.get("name", str), find(ar.obj.get("root"), f"{ar.where}.root"))
        )
    order = top.get("tree_order", list, optional=True)
    tree_order = (
        None if order is None else [find(ref, f"tree_order[{k}]") for k, ref in enumerate(order)]
    )
    accel = top.get("accel", str, optional=True)
    facts = [_fact(f, f"facts[{k}]") for k, f in enumerate(top.get("facts", list))]
    machine = Machine(spaces, tree_order, accel, facts)
    machine.check()
    return machine
