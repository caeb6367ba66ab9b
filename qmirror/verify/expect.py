"""Expected memory maps: what a test says should be mapped, checked with a readable diff. Pure.

An expectation names an address space and what it should map::

    assert_memory_map(mtree, {
        "memory": [
            ("0xfebc0000", "0xfebdffff", "e1000-mmio"),          # start, last byte, region
            ("0xfebc0000", None, "e1000-mmio", {"type": "i/o"}),   # and some attributes
            "00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios",   # a line of -f
            "0xc000-0xc03f e1000-io",                              # the short form
        ],
        "I/O": [(None, None, "e1000-io")],                         # mapped anywhere
    })

* Addresses are ints or hex strings (``0x`` optional: strings are always hex, as QEMU
  prints them); the end is the *last byte* (inclusive), as ``info mtree`` shows it;
  ``None`` matches any address.
* The region name may use shell wildcards (``virtio-pci-common-*``).
* Attributes (a dict as fourth item, or the fields of a pasted line): ``type``
  (``ram``, ``rom``, ``i/o``, ``romd``, ``ramd``), ``priority``, ``offset`` (in the
  region), ``owner`` (as ``-o`` prints it, e.g. ``owner:{dev id=nic0}``, or a substring).
* An expectation holds when one stretch of contiguous ranges of that region starts
  and ends exactly there (QEMU splits a region's ranges where other regions cover part
  of it; the stretch is what a device developer means by "the BAR is at X").
* ``exact=True``: the address space maps nothing else (every range accounted for).

The truth is QEMU's own ``info mtree -f`` when the reading has it; a model without it
(a :class:`~qmirror.core.model.Machine` built by hand) is checked against qmirror's
rendering. On failure the message says, per expectation, what was expected, where the
region really is, what QEMU maps at the expected address, how qmirror's model explains
it (the path of containers, aliases and priorities), and the neighbouring ranges.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qmirror.core.model import Machine
from qmirror.core.render import FlatRange, render_machine
from qmirror.errors import ExpectationError, ParseError
from qmirror.text.document import FlatViewBlock
from qmirror.text.flat import FlatDocument
from qmirror.text.grammar import FlatRangeLine, format_owners, hex16, parse_flat_range
from qmirror.verify.check import render_document
from qmirror.verify.compare import describe_path
from qmirror.verify.reading import Reading, from_snapshot


#: What an expectation may be written as.
Entry = str | Sequence[Any] | Mapping[str, Any]

_SHORT = re.compile(
    r"\s*(?:0x)?(?P<start>[0-9a-fA-F]+)\s*-\s*(?:0x)?(?P<last>[0-9a-fA-F]+)"
    r"\s+(?P<name>\S.*?)\s*"
)
_ATTRS = ("type", "priority", "offset", "owner")


@dataclass(frozen=True, slots=True)
class Expected:
    """One expectation about one address space."""

    address_space: str
    start: int | None
    last: int | None
    name: str
    attrs: Mapping[str, Any]
    text: str  # as the test wrote it, for messages

    def describe(self) -> str:
        where = (
            "anywhere"
            if self.start is None and self.last is None
            else f"{_addr(self.start)}-{_addr(self.last)}"
        )
        attrs = "".join(f", {k} {v}" for k, v in self.attrs.items())
        return f"{self.name} at {where}{attrs}"


def _addr(value: int | None) -> str:
    return "*" if value is None else hex16(value)


def _address(value: object, what: str) -> int | None:
    if value is None or value == "*":
        return None
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int or a hex string, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0x")
        try:
            return int(text, 16)
        except ValueError as err:
            raise ExpectationError(f"{what} {value!r} is not a hex address") from err
    raise TypeError(f"{what} must be an int or a hex string, not {value!r}")


def parse_entry(address_space: str, entry: Entry) -> Expected:
    """One expectation, from any of the accepted forms.

    :raise ExpectationError: an entry that is none of them (said how).
    """
    if isinstance(entry, str):
        line = entry if entry.startswith("  ") else "  " + entry.strip()
        try:
            r = parse_flat_range(
                line, 1, owners="owner:" in line or "parent:" in line or " orphan" in line
            )
        except ParseError as err:
            m = _SHORT.fullmatch(entry)
            if m is None:
                raise ExpectationError(
                    f"expectation {entry!r}: write 'START-LAST NAME' or "
                    "paste a line of `info mtree -f`"
                ) from err
            return Expected(
                address_space, int(m["start"], 16), int(m["last"], 16), m["name"], {}, entry
            )
        attrs: dict[str, Any] = {
            "type": ("nv-" if r.nonvolatile else "") + r.type_word,
            "priority": r.priority,
        }
        if r.offset:
            attrs["offset"] = r.offset
        if r.ownership is not None:
            attrs["owner"] = format_owners(r.ownership).strip()
        return Expected(address_space, r.start, r.end, r.name, attrs, entry.strip())
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"start", "last", "end", "name", *_ATTRS}
        if unknown or "name" not in entry:
            raise ExpectationError(
                f"expectation {dict(entry)!r}: keys are name, start, last, {', '.join(_ATTRS)}"
            )
        last = entry.get("last", entry.get("end"))
        attrs = {k: entry[k] for k in _ATTRS if k in entry}
        return Expected(
            address_space,
            _address(entry.get("start"), "start"),
            _address(last, "last"),
            str(entry["name"]),
            attrs,
            repr(dict(entry)),
        )
    items: list[Any] = list(entry) if isinstance(entry, Sequence) else []  # type: ignore[redundant-expr]
    if not 3 <= len(items) <= 4:
        raise ExpectationError(
            f"expectation {entry!r}: a (start, last, name[, attributes]) tuple, a dict, or a string"
        )
    attrs = dict(items[3]) if len(items) == 4 else {}
    bad = set(attrs) - set(_ATTRS)
    if bad:
        raise ExpectationError(
            f"expectation {tuple(items)!r}: unknown attributes "
            f"{', '.join(sorted(bad))} (known: {', '.join(_ATTRS)})"
        )
    return Expected(
        address_space,
        _address(items[0], "start"),
        _address(items[1], "last"),
        str(items[2]),
        attrs,
        repr(tuple(items)),
    )


@dataclass(slots=True)
class Outcome:
    """How one expectation fared."""

    expected: Expected
    ok: bool
    lines: list[str]


def _matches_name(pattern: str, name: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern


def _runs(ranges: list[FlatRangeLine], pattern: str) -> list[list[FlatRangeLine]]:
    """Stretches of contiguous ranges of one region matching ``pattern``."""
    runs: list[list[FlatRangeLine]] = []
    for r in ranges:
        if not _matches_name(pattern, r.name):
            continue
        last = runs[-1][-1] if runs else None
        if last is not None and last.name == r.name and last.end + 1 == r.start:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def _attr_ok(key: str, want: Any, r: FlatRangeLine) -> bool:
    if key == "type":
        return str(want) in (r.type_word, ("nv-" if r.nonvolatile else "") + r.type_word)
    if key == "priority":
        return int(want) == r.priority
    if key == "offset":
        return _address(want, "offset") == r.offset
    if key == "owner":
        shown = "" if r.ownership is None else format_owners(r.ownership).strip()
        return str(want) == shown or str(want) in shown
    return False  # pragma: no cover - keys are checked when parsing


def _line(r: FlatRangeLine) -> str:
    off = f" @{hex16(r.offset)}" if r.offset else ""
    owner = "" if r.ownership is None else " " + format_owners(r.ownership).strip()
    kind = ("nv-" if r.nonvolatile else "") + r.type_word
    return f"{hex16(r.start)}-{hex16(r.end)} (prio {r.priority}, {kind}): {r.name}{off}{owner}"


def _at(ranges: list[FlatRangeLine], addr: int) -> int | None:
    for i, r in enumerate(ranges):
        if r.start <= addr <= r.end:
            return i
    return None


def check_one(e: Expected, block: FlatViewBlock, rendered: list[FlatRange] | None) -> Outcome:
    """Check one expectation against one FlatView (QEMU's block, or our rendering)."""
    ranges = block.ranges
    runs = _runs(ranges, e.name)
    for run in runs:
        first, last = run[0], run[-1]
        if e.start is not None and first.start != e.start:
            continue
        if e.last is not None and last.end != e.last:
            continue
        if all(_attr_ok(k, v, r) for k, v in e.attrs.items() for r in run):
            return Outcome(e, True, [])
    out = [f"expected {e.describe()}"]
    if not runs:
        out.append(f"found:   {e.name} is not mapped in this address space")
    else:
        for run in runs[:6]:
            first, last = run[0], run[-1]
            if len(run) == 1:
                out.append(f"found:   {_line(first)}")
            else:
                out.append(
                    f"found:   {first.name} at {hex16(first.start)}-{hex16(last.end)} "
                    f"in {len(run)} ranges, the first: {_line(first)}"
                )
        if len(runs) > 6:
            out.append(f"         … and {len(runs) - 6} more places")
    probe = e.start if e.start is not None else e.last
    if probe is not None:
        i = _at(ranges, probe)
        if i is None:
            out.append(f"at {hex16(probe)}: nothing is mapped")
        else:
            out.append(f"at {hex16(probe)}: {_line(ranges[i])}")
            if rendered is not None:
                why = _explain(rendered, probe)
                if why:
                    out.append(f"         qmirror's model: {why}")
        lo = max(0, (i if i is not None else _insertion(ranges, probe)) - 2)
        near = ranges[lo : lo + 5]
        if near:
            out.append("nearby:")
            out.extend(f"  {'>' if r.start <= probe <= r.end else ' '} {_line(r)}" for r in near)
    return Outcome(e, False, out)


def _insertion(ranges: list[FlatRangeLine], addr: int) -> int:
    for i, r in enumerate(ranges):
        if r.start > addr:
            return i
    return len(ranges)


def _explain(rendered: list[FlatRange], addr: int) -> str:
    for r in rendered:
        if r.start <= addr < r.end:
            return describe_path(r.visit_at(addr))
    return ""


def _document(subject: Reading | Machine) -> tuple[FlatDocument, str, dict[str, list[FlatRange]]]:
    """The truth to check against, what it is, and our rendered ranges per AS name."""
    if isinstance(subject, Machine):
        views = render_machine(subject)
        owners = all(mr.ownership is not None for mr in subject.regions())
        doc = render_document(subject, views, owners=owners)
        return doc, "qmirror's rendering of the model", _rendered(views)
    rendered = _rendered(subject.views)
    if subject.qemu_flat is not None:
        return subject.qemu_flat, f"QEMU's `info mtree -f` of {subject.title}", rendered
    owners = all(mr.ownership is not None for mr in subject.machine.regions())
    doc = render_document(subject.machine, subject.views, owners=owners)
    return doc, f"qmirror's rendering of {subject.title}", rendered


def _rendered(views: Iterable[Any]) -> dict[str, list[FlatRange]]:
    out: dict[str, list[FlatRange]] = {}
    for v in views:
        for a in v.address_spaces:
            out.setdefault(a.name, list(v.ranges))
    return out


def check_memory_map(
    subject: Reading | Machine, expected: Mapping[str, Iterable[Entry]], *, exact: bool = False
) -> tuple[bool, str]:
    """Check expectations; return (ok, the report). See the module docstring."""
    doc, truth, rendered = _document(subject)
    blocks: dict[str, list[FlatViewBlock]] = {}
    for b in doc.views:
        for a in b.address_spaces:
            blocks.setdefault(a.name, []).append(b)
    sections: list[str] = []
    failed = total = 0
    for as_name, entries in expected.items():
        if isinstance(entries, str | bytes):
            raise TypeError(f"expected[{as_name!r}] must be a list of expectations, not a string")
        wanted = [parse_entry(as_name, e) for e in entries]
        total += len(wanted)
        found = blocks.get(as_name)
        if not found:
            failed += len(wanted)
            names = sorted(blocks)
            sections.append(
                f'address space "{as_name}": there is none (address spaces: {", ".join(names)})'
            )
            continue
        block = found[0]
        outcomes = [check_one(e, block, rendered.get(as_name)) for e in wanted]
        lines = [
            f'address space "{as_name}" (FlatView root {block.root or "(none)"}, '
            f"{len(block.ranges)} ranges):"
        ]
        for o in outcomes:
            mark = "✓" if o.ok else "✗"
            lines.append(f"  {mark} {o.expected.text}")
            lines.extend("      " + ln for ln in o.lines)
        failed += sum(not o.ok for o in outcomes)
        if exact:
            extra = [r for r in block.ranges if not any(_covers(o.expected, r) for o in outcomes)]
            if extra:
                failed += 1
                lines.append(
                    f"  ✗ exact: {len(extra)} ranges are mapped that no expectation names:"
                )
                lines.extend(f"      {_line(r)}" for r in extra[:20])
                if len(extra) > 20:
                    lines.append(f"      … and {len(extra) - 20} more")
        sections.append("\n".join(lines))
    head = (
        f"{failed} of {total} memory-map expectations failed"
        if failed
        else f"all {total} memory-map expectations hold"
    )
    return failed == 0, f"{head} (checked against {truth})\n\n" + "\n\n".join(sections)


def _covers(e: Expected, r: FlatRangeLine) -> bool:
    if not _matches_name(e.name, r.name):
        return False
    lo = e.start if e.start is not None else 0
    hi = e.last if e.last is not None else (1 << 64) - 1
    return lo <= r.start and r.end <= hi


def assert_memory_map(
    subject: Any, expected: Mapping[str, Iterable[Entry]], *, exact: bool = False
) -> None:
    """Assert that address spaces map what ``expected`` says (see the module docstring).

    :param subject: a :class:`~qmirror.verify.reading.Reading` (the ``mtree`` fixture), a
        :class:`~qmirror.pytest_plugin.QemuVM` (read now), a
        :class:`~qmirror.live.snapshot.Snapshot`, or a :class:`~qmirror.core.model.Machine`.
    :raise AssertionError: with the per-expectation report.
    """
    __tracebackhide__ = True
    reading = as_reading(subject)
    ok, report = check_memory_map(reading, expected, exact=exact)
    if not ok:
        raise AssertionError(report)


def as_reading(subject: Any) -> Reading | Machine:
    """Whatever a test holds, as something :func:`check_memory_map` takes."""
    if isinstance(subject, Reading | Machine):
        return subject
    snapshot = getattr(subject, "snapshot", None)
    if callable(snapshot):  # a QemuVM: read it now
        taken = snapshot()
        if isinstance(taken, Reading):
            return taken
    if hasattr(subject, "tree") and hasattr(subject, "flat") and hasattr(subject, "metadata"):
        return from_snapshot(subject)  # a qmirror.live.snapshot.Snapshot
    raise TypeError(
        f"cannot check the memory map of {type(subject).__name__}: give the "
        "mtree fixture, a QemuVM, a Snapshot or a Machine"
    )
