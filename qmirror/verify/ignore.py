"""What a user asked to leave out of comparisons: regions by name, fields by name.

Some differences are expected and uninteresting in a given setting: accelerator words
when the accelerator is not known, KVM-only regions, a device under development.
:class:`IgnoreRules` holds regular expressions over region names and a set of field
names; :func:`filter_comparison` (for ``check``) and :mod:`qmirror.verify.snapdiff` (for
``diff``) apply them. Ignoring is always reported: what was left out is counted.

Field names, shared by ``check`` and ``diff``:

``end``, ``priority``, ``nonvolatile``, ``type``, ``name``, ``offset``, ``owner``,
``accel`` (range fields of ``info mtree -f``); ``addr``, ``size``, ``enabled``,
``alias``, ``readonly`` (region fields of the tree, for ``diff``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from qmirror.errors import ConfigError
from qmirror.verify.check import CheckResult
from qmirror.verify.compare import Comparison, RangeDiff, ViewResult


#: User-facing field name → the name :mod:`qmirror.verify.compare` uses.
RANGE_FIELDS = {
    "end": "end",
    "priority": "priority",
    "nonvolatile": "nonvolatile",
    "type": "type_word",
    "name": "name",
    "offset": "offset",
    "owner": "ownership",
    "accel": "accel",
}
#: Region fields compared by ``diff`` (besides the range fields that apply to regions).
TREE_FIELDS = (
    "type",
    "addr",
    "size",
    "priority",
    "enabled",
    "alias",
    "readonly",
    "nonvolatile",
    "owner",
)
FIELDS = tuple(dict.fromkeys([*RANGE_FIELDS, *TREE_FIELDS]))


@dataclass(frozen=True, slots=True)
class IgnoreRules:
    """Regions (regular expressions searched in the name) and fields to leave out."""

    regions: tuple[re.Pattern[str], ...] = ()
    fields: frozenset[str] = frozenset()

    @classmethod
    def parse(
        cls, regions: Iterable[str] = (), fields: Iterable[str] = (), *, origin: str = ""
    ) -> IgnoreRules:
        """Compile the rules, refusing bad regexes and unknown field names.

        :param origin: where they came from, for error messages (``pyproject.toml``).
        :raise ConfigError: a regex does not compile or a field is unknown.
        """
        where = f"{origin}: " if origin else ""
        compiled = []
        for pattern in regions:
            try:
                compiled.append(re.compile(pattern))
            except re.error as err:
                raise ConfigError(f"{where}ignore regex {pattern!r}: {err}") from err
        names = set()
        for name in fields:
            canonical = {"type_word": "type", "ownership": "owner"}.get(name, name)
            if canonical not in FIELDS:
                raise ConfigError(
                    f"{where}unknown field {name!r} to ignore (known: {', '.join(FIELDS)})"
                )
            names.add(canonical)
        return cls(tuple(compiled), frozenset(names))

    def __bool__(self) -> bool:
        return bool(self.regions or self.fields)

    def region(self, name: str | None) -> bool:
        """Whether a region of this name is left out."""
        label = "(null)" if name is None else name
        return any(p.search(label) for p in self.regions)

    def describe(self) -> str:
        """``regions ^kvm-, fields accel`` for reports."""
        parts = []
        if self.regions:
            parts.append("regions " + ", ".join(p.pattern for p in self.regions))
        if self.fields:
            parts.append("fields " + ", ".join(sorted(self.fields)))
        return "; ".join(parts) or "nothing"


def _keep(d: RangeDiff, rules: IgnoreRules) -> RangeDiff | None:
    names = [r.name for r in (d.qemu, d.ours) if r is not None]
    if any(rules.region(n) for n in names):
        return None
    if d.kind != "changed":
        return d
    dropped = {RANGE_FIELDS[f] for f in rules.fields if f in RANGE_FIELDS}
    fields = [f for f in d.fields if f not in dropped]
    if not fields:
        return None
    return d if fields == d.fields else replace(d, fields=fields)


def filter_comparison(comparison: Comparison, rules: IgnoreRules) -> tuple[Comparison, int]:
    """Leave ignored regions and fields out of a comparison.

    :return: the filtered comparison and how many range differences were dropped.
    """
    if not rules:
        return comparison, 0
    views: list[ViewResult] = []
    dropped = 0
    for v in comparison.views:
        kept = [k for k in (_keep(d, rules) for d in v.diffs) if k is not None]
        dropped += len(v.diffs) - len(kept)
        if len(kept) == len(v.diffs) and all(a is b for a, b in zip(kept, v.diffs, strict=True)):
            views.append(v)
            continue
        status = v.status
        if status == "mismatch" and not kept and v.qemu_root == v.our_root:
            status = "match"
        deepdiff = v.deepdiff if kept else {}
        views.append(replace(v, diffs=kept, status=status, deepdiff=deepdiff))
    accel = comparison.accel_compared and "accel" not in rules.fields
    return replace(comparison, views=views, accel_compared=accel), dropped


def apply_to_check(result: CheckResult, rules: IgnoreRules) -> int:
    """The hook for ``check``-like commands: filter ``result`` in place.

    :return: how many range differences were left out (report it).
    """
    result.comparison, dropped = filter_comparison(result.comparison, rules)
    return dropped
