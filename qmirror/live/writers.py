"""What the mirror tells ``qmirror watch``: JSON Lines records or human-readable lines.

Both writers are :class:`~qmirror.sim.listener.MemoryListener`\\ s subscribed to every
address space of a :class:`~qmirror.live.mirror.Mirror` and observers of its readings.

**JSON Lines** (:class:`JsonLinesWriter`, ``qmirror watch --format jsonl``): one
object per line, every one with::

    "seq"            1, 2, 3, ... (monotonic, per stream)
    "time"           our UTC time, ISO 8601 ("2026-11-25T13:13:12.123456+00:00")
    "event"          what the record is (below)
    "reading"        the reading it belongs to (1 = the first), or null
    "trigger"        "start" | "poll" | "event:NAME" | "kick"  (what caused the reading)
    "qemu_timestamp" {"seconds": ..., "microseconds": ...} of the QMP event that
                     triggered the reading, else null

and, per ``event``:

``start``       ``target``, ``metadata`` (QEMU version and package, arch, machine,
                accelerator, run state, ...): once, before the first reading's records
``validation``  ``result`` ("match"/"mismatch"), ``flatviews``, ``ranges``, ``tries``,
                ``status`` (run state), ``mismatches``: [{``address_spaces``,
                ``status``, ``differences``: [{``start``, ``kind``, ``explanation``}]}]
``begin``, ``commit``  a transaction (one per reading that changed)
``region_add``, ``region_del``, ``region_nop``  one FlatRange of one address space:
                ``address_space`` [name, root], ``address_space_key`` [name, root,
                alias target or null, index], ``start``, ``size``, ``end`` (the last byte,
                as ``info mtree`` prints it), ``offset`` (offset within the region),
                ``region`` (name), ``owner`` (as ``-o`` prints it, or null), ``type``
                (the ``-f`` type word), ``priority``, ``readonly``, ``nonvolatile``,
                ``romd_mode``
``log_start``, ``log_stop``  as a region record, plus ``old_mask`` and ``new_mask``
``error``       ``kind`` ("timeout" | "gone" | "failed"), ``message``, ``fatal``,
                ``failures`` (in a row), ``retry_in`` (seconds, or null when fatal)
``end``         ``reason`` ("count" | "duration" | "gone" | "failed" | "interrupted"),
                ``readings``

Addresses and sizes are ``"0x%016x"`` strings (a size of 2**64 is
``"0x10000000000000000"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, TextIO

from qmirror.core.units import hexs
from qmirror.live.mirror import ErrorReport, Frame, Mirror, MirrorObserver
from qmirror.live.snapshot import utc_now
from qmirror.sim.listener import MemoryListener, Section
from qmirror.sim.topology import ASKey
from qmirror.text.grammar import format_owners


__all__ = ["JsonLinesWriter", "TextWriter", "stream_writer"]

#: Differences listed per mismatching FlatView in a validation record.
_DIFFS_SHOWN: Final = 20


def _type_word(section: Section) -> str:
    mr = section.mr
    if mr is None:
        return "i/o"
    return "rom" if section.readonly else mr.type_word()


class _Writer(MemoryListener, MirrorObserver):
    """Shared by the JSON Lines and text writers: which reading, which trigger."""

    def __init__(self, mirror: Mirror, write: Callable[[str], None]) -> None:
        MemoryListener.__init__(self, priority=0)
        self.mirror = mirror
        self.write = write

    def attach(self) -> None:
        """Subscribe to every address space and to the mirror's own news."""
        self.mirror.observers.append(self)
        self.mirror.subscribe(self)

    def key(self, section: Section) -> ASKey:
        key = self.mirror.key_of(section.address_space)
        assert key is not None
        return key


class JsonLinesWriter(_Writer):
    """Writes the JSON Lines records described in the module docstring.

    :param nops: also write ``region_nop`` records (every unchanged range of every
        address space, at every transaction).
    """

    name = "jsonl"

    def __init__(self, mirror: Mirror, write: Callable[[str], None], *, nops: bool = True) -> None:
        super().__init__(mirror, write)
        self.nops = nops
        self.seq = 0
        self._in_reading = False
        # The reading being delivered is not yet mirror.frame: remember its number.
        self._reading: int | None = None

    def record(self, event: str, **fields: Any) -> None:
        self.seq += 1
        trigger = self.mirror.trigger
        frame = self.mirror.frame
        rec: dict[str, Any] = {
            "seq": self.seq,
            "time": utc_now(),
            "event": event,
            "reading": fields.pop("reading", frame.number if frame is not None else None),
            "trigger": trigger.label if trigger is not None else None,
            "qemu_timestamp": trigger.qemu_timestamp if trigger is not None else None,
        }
        rec.update(fields)
        self.write(json.dumps(rec) + "\n")

    def _region(self, event: str, section: Section, **extra: Any) -> None:
        key = self.key(section)
        mr = section.mr
        own = mr.ownership if mr is not None else None
        self.record(
            event,
            reading=self._reading,
            address_space=[key[0], key[1]],
            address_space_key=list(key),
            start=hexs(section.offset_within_address_space),
            size=hexs(section.size),
            end=hexs(section.offset_within_address_space + section.size - 1),
            offset=hexs(section.offset_within_region),
            region=mr.label if mr is not None else None,
            owner=None if own is None else format_owners(own).strip(),
            type=_type_word(section),
            priority=mr.priority if mr is not None else None,
            readonly=section.readonly,
            nonvolatile=section.nonvolatile,
            romd_mode=section.romd_mode,
            **extra,
        )

    def on_start(self, mirror: Mirror, frame: Frame) -> None:
        self._reading = frame.number
        self.record(
            "start", reading=frame.number, target=mirror.label, metadata=frame.snapshot.metadata()
        )

    def on_reading(self, mirror: Mirror, frame: Frame, previous: Frame | None) -> None:
        self._reading = frame.number
        self._in_reading = True
        comp = frame.result.comparison
        mismatches = [
            {
                "address_spaces": v.address_spaces,
                "status": v.status,
                "differences": [
                    {"start": hexs(d.start), "kind": d.kind, "explanation": d.explanation}
                    for d in v.diffs[:_DIFFS_SHOWN]
                ],
            }
            for v in comp.views
            if not v.ok
        ]
        info = frame.snapshot.info
        self.record(
            "validation",
            reading=frame.number,
            result=comp.result,
            flatviews=len(comp.views),
            ranges=sum(v.ranges for v in comp.views),
            tries=frame.snapshot.tries,
            status=None if info is None else info["status"],
            mismatches=mismatches,
        )

    def on_error(self, mirror: Mirror, report: ErrorReport) -> None:
        self.record(
            "error",
            reading=None,
            kind=report.kind,
            message=report.message,
            fatal=report.fatal,
            failures=report.failures,
            retry_in=report.retry_in,
        )

    def on_end(self, mirror: Mirror, reason: str) -> None:
        self.record("end", reading=None, reason=reason, readings=mirror.readings)

    def begin(self) -> None:
        # Subscribing replays a begin/commit of its own: only readings are records.
        if self._in_reading:
            self.record("begin", reading=self._reading)

    def commit(self) -> None:
        if self._in_reading:
            self.record("commit", reading=self._reading)
            self._in_reading = False

    def region_add(self, section: Section) -> None:
        self._region("region_add", section)

    def region_del(self, section: Section) -> None:
        self._region("region_del", section)

    def region_nop(self, section: Section) -> None:
        if self.nops:
            self._region("region_nop", section)

    def log_start(self, section: Section, old: int, new: int) -> None:
        self._region("log_start", section, old_mask=old, new_mask=new)

    def log_stop(self, section: Section, old: int, new: int) -> None:
        self._region("log_stop", section, old_mask=old, new_mask=new)


class TextWriter(_Writer):
    """Human-readable lines: additions and removals, validations, errors."""

    name = "text"

    def __init__(self, mirror: Mirror, write: Callable[[str], None]) -> None:
        super().__init__(mirror, write)
        self._nops = 0
        self._changes = 0
        # Subscribing replays begin/commit too: only a reading's commit gets a line.
        self._in_reading = False
        # The first reading adds every range: counted per address space, not listed.
        self._first: dict[str, int] | None = None

    def line(self, text: str) -> None:
        self.write(f"{utc_now()[11:23]} {text}\n")

    def on_start(self, mirror: Mirror, frame: Frame) -> None:
        meta = frame.snapshot.metadata()
        self.line(
            f"watching {mirror.label}: QEMU {meta['qemu_version']}, {meta['machine']}, "
            f"{meta['accelerator']}, {meta['status']}"
        )

    def on_reading(self, mirror: Mirror, frame: Frame, previous: Frame | None) -> None:
        comp = frame.result.comparison
        bad = [v for v in comp.views if not v.ok]
        self._in_reading = True
        self._first = {} if previous is None else None
        verdict = "match" if not bad else f"MISMATCH in {len(bad)} FlatViews"
        tries = frame.snapshot.tries
        self.line(
            f"reading {frame.number} ({frame.trigger.label}, {tries} "
            f"{'try' if tries == 1 else 'tries'}): {len(comp.views)} FlatViews, "
            f"validation {verdict}"
        )
        for v in bad:
            self.line(
                f"  ✗ {', '.join(v.address_spaces[:3])}: {v.status}, {len(v.diffs)} ranges differ"
            )

    def on_error(self, mirror: Mirror, report: ErrorReport) -> None:
        then = "giving up" if report.fatal else f"retry in {report.retry_in:g}s"
        self.line(f"error ({report.kind}): {report.message} — {then}")

    def on_end(self, mirror: Mirror, reason: str) -> None:
        self.line(f"end ({reason}) after {mirror.readings} readings")

    def begin(self) -> None:
        self._nops = self._changes = 0

    def commit(self) -> None:
        if not self._in_reading:
            return
        self._in_reading = False
        if self._first is not None:
            spaces = ", ".join(f"{name} {n}" for name, n in self._first.items())
            self.line(
                f"  the map: {self._changes} ranges in {len(self._first)} address "
                f"spaces ({spaces}); later readings list what changes"
            )
            self._first = None
            return
        what = f"{self._changes} changes" if self._changes else "no range changed"
        self.line(f"  {what}, {self._nops} ranges unchanged")

    def _range(self, mark: str, section: Section) -> None:
        self._changes += 1
        key = self.key(section)
        if self._first is not None:
            self._first[key[0]] = self._first.get(key[0], 0) + 1
            return
        start = section.offset_within_address_space
        mr = section.mr
        off = f" @{section.offset_within_region:016x}" if section.offset_within_region else ""
        name = mr.label if mr is not None else "?"
        self.line(
            f"  {mark} {key[0]}: {start:016x}-{start + section.size - 1:016x} "
            f"({_type_word(section)}) {name}{off}"
        )

    def region_add(self, section: Section) -> None:
        self._range("+", section)

    def region_del(self, section: Section) -> None:
        self._range("-", section)

    def region_nop(self, section: Section) -> None:
        self._nops += 1


def stream_writer(stream: TextIO) -> Callable[[str], None]:
    """A write function that flushes every record (a pipe reader sees it at once)."""

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write
