"""The mirror: a model of a live VM's memory map, kept in sync, told as MemoryListener calls.

:class:`Mirror` reads the VM (a consistent :class:`~qmirror.live.snapshot.Snapshot`) on a
poll interval and at once when QEMU announces an event that may change the map. Each
reading whose texts differ from the previous one is

1. rebuilt and validated: :func:`qmirror.verify.check.check` renders our FlatViews and
   compares them with QEMU's ``-f`` of the same moment (a mismatch is reported, not
   hidden, and the reading is still used);
2. diffed per AddressSpace against the previous reading the way QEMU's topology
   update does (:func:`qmirror.sim.topology.transitions`: removals first, then additions;
   unchanged ranges are ``region_nop``);
3. delivered to subscribers through :class:`qmirror.sim.listener.Listeners`: global
   ``begin``; per address space in creation order ``region_del`` (Reverse priority
   order), then ``region_nop``/``log_*``/``region_add`` (Forward); global ``commit``.

A reading identical to the previous one is no transaction at all.

**Events that trigger a reading** (:data:`TOPOLOGY_EVENTS`; QEMU 7.2 names): no QMP
event reports a memory-map change as such, so the mirror listens for those after which
the map has probably changed, and polls for the rest:

==============================  ===================================================
``DEVICE_DELETED``              a device is gone: its regions and its bus-master
                                address space with it
``RESET``                       firmware-visible state is back to power-on: BARs,
                                PCI command registers, PAM, SMRAM
``STOP``, ``RESUME``            run state changed: a stopped guest has a map that
                                holds still; a resumed one may start changing it
``SUSPEND``, ``WAKEUP``         S3: firmware reprograms the chipset on wake-up
``MEMORY_DEVICE_SIZE_CHANGE``   virtio-mem plugged or unplugged memory
``SHUTDOWN``                    QEMU is about to exit (or, with ``-no-shutdown``,
                                to stop): read now, or notice it is gone
==============================  ===================================================

Not in the set: ``device_add`` raises no event at all in QEMU 7.2 (there is no
``DEVICE_ADDED``): a new device is seen at the next poll, or at once if whoever added it
calls :meth:`Mirror.kick`. ``BALLOON_CHANGE`` changes how much memory the guest has
given back, not the regions (the balloon discards pages inside ``pc.ram``).
``ACPI_DEVICE_OST`` reports the guest's answer after the map already changed. Guest
programming of BARs, PAM or SMRAM raises nothing: polling finds it.

Events come through a bounded :class:`~qmirror.live.qmp.EventFeed` and are drained at every
wake-up (several events in a burst make one reading), so memory stays bounded however
long the mirror runs.

**Identity.** Two readings share no Python objects, so ranges are matched by value
(:func:`qmirror.sim.topology.same_by_value`), address spaces by :data:`~qmirror.sim.topology.ASKey`
(name, root, root's alias target, index among equals). The ``address_space`` of every
:class:`~qmirror.sim.listener.Section` a subscriber receives is the mirror's own stable
:class:`~qmirror.core.model.AddressSpace` for that key, the same object for the mirror's
whole life (as QEMU's AddressSpace outlives its FlatViews), whose ``root`` is the root
region of the latest reading delivered (it is updated after ``commit``); an address
space that went away keeps its object with ``root = None`` and comes back to it. A
section's ``mr`` is the region of the reading the range comes from: the old reading for
``region_del``, the new one for ``region_add`` and ``region_nop``.

**Faults.** A reading that times out (a stalled monitor) or fails (a reply that is not
``info mtree``, a map that never holds still) is reported to observers and retried with
exponential backoff; after ``max_failures`` failures in a row the mirror gives up. A
lost connection (QEMU gone) is reported and ends the mirror at once; :meth:`Mirror.run`
then raises.

**JSON Lines** (:class:`qmirror.live.watchwriters.JsonLinesWriter`, ``qmirror watch
--format jsonl``): one object per line, every one with::

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

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from qemu.qmp import Message

from qmirror.core.model import AddressSpace, Machine
from qmirror.core.render import FlatRange, FlatView, render_machine
from qmirror.errors import MonitorTimeout, QmirrorError
from qmirror.live.qmp import EventFeed, MachineInfo, Monitor
from qmirror.live.snapshot import DEFAULT_MAX_TRIES, Snapshot, take_snapshot
from qmirror.sim.listener import Listeners, MemoryListener, Section
from qmirror.sim.topology import ASKey, Transition, transitions
from qmirror.verify.check import CheckResult, check


__all__ = [
    "TOPOLOGY_EVENTS",
    "ErrorReport",
    "Frame",
    "Mirror",
    "MirrorObserver",
    "Trigger",
]

#: QMP events after which the memory map has probably changed (see the module doc).
TOPOLOGY_EVENTS: Final = frozenset({
    "DEVICE_DELETED",
    "RESET",
    "STOP",
    "RESUME",
    "SUSPEND",
    "WAKEUP",
    "MEMORY_DEVICE_SIZE_CHANGE",
    "SHUTDOWN",
})


def hexs(value: int) -> str:
    return f"0x{value:016x}"


@dataclass(frozen=True, slots=True)
class Trigger:
    """What caused a reading.

    :param kind: ``"start"`` (the first reading), ``"poll"``, ``"event"``, ``"kick"``
        (:meth:`Mirror.kick` or an explicit :meth:`Mirror.refresh`).
    :param event: the QMP event's name (the first of a burst).
    :param qemu_timestamp: that event's ``{"seconds": ..., "microseconds": ...}``.
    :param events: every event name of the burst, in arrival order.
    """

    kind: Literal["start", "poll", "event", "kick"]
    event: str | None = None
    qemu_timestamp: dict[str, int] | None = None
    events: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``"poll"``, ``"event:RESET"``, ..."""
        return f"event:{self.event}" if self.kind == "event" else self.kind

    @classmethod
    def from_events(cls, events: Sequence[Message]) -> Trigger:
        first = events[0]
        stamp = first.get("timestamp") if hasattr(first, "get") else None
        qemu_ts = None
        if isinstance(stamp, dict):
            qemu_ts = {"seconds": int(stamp.get("seconds", 0)),
                       "microseconds": int(stamp.get("microseconds", 0))}
        return cls("event", str(first["event"]), qemu_ts,
                   tuple(str(e["event"]) for e in events))


@dataclass(eq=False)
class Frame:
    """One reading of the VM as the mirror took it.

    :param number: 1 for the first reading, counting every reading taken (also the
        ones that found nothing new).
    :param snapshot: QEMU's texts and metadata.
    :param result: the validation (our rendering against QEMU's ``-f``).
    :param views: our FlatViews of :attr:`machine`.
    :param trigger: what caused the reading.
    """

    number: int
    snapshot: Snapshot
    result: CheckResult
    views: list[FlatView]
    trigger: Trigger

    @property
    def machine(self) -> Machine:
        return self.result.machine

    @property
    def ok(self) -> bool:
        return self.result.ok


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """A reading that failed.

    :param kind: ``"timeout"`` (stalled monitor), ``"gone"`` (connection lost),
        ``"failed"`` (anything else: bad reply, busy guest, ...).
    :param retry_in: seconds until the next try, ``None`` when fatal.
    """

    kind: Literal["timeout", "gone", "failed"]
    message: str
    fatal: bool
    failures: int
    retry_in: float | None
    trigger: Trigger
    error: BaseException = field(repr=False)


class MirrorObserver:
    """Hears what is not a MemoryListener callback: readings, errors, the end."""

    def on_start(self, mirror: Mirror, frame: Frame) -> None:
        """The first reading is in (before its transaction)."""

    def on_reading(self, mirror: Mirror, frame: Frame, previous: Frame | None) -> None:
        """A reading that changed something is in (before its transaction)."""

    def on_error(self, mirror: Mirror, report: ErrorReport) -> None:
        """A reading failed."""

    def on_end(self, mirror: Mirror, reason: str) -> None:
        """:meth:`Mirror.run` is over (``count``, ``duration``, ``gone``, ``failed``,
        ``interrupted``)."""


class _Tap(MemoryListener):
    """Carries one address space's region callbacks to a listener that subscribed to
    every address space (its begin/commit come once, from the global list)."""

    name = "tap"

    def __init__(self, target: MemoryListener, address_space: AddressSpace) -> None:
        super().__init__(target.priority)
        self.target = target
        self.address_space = address_space

    def region_add(self, section: Section) -> None:
        self.target.region_add(section)

    def region_del(self, section: Section) -> None:
        self.target.region_del(section)

    def region_nop(self, section: Section) -> None:
        self.target.region_nop(section)

    def log_start(self, section: Section, old: int, new: int) -> None:
        self.target.log_start(section, old, new)

    def log_stop(self, section: Section, old: int, new: int) -> None:
        self.target.log_stop(section, old, new)

    def eventfd_add(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        self.target.eventfd_add(section, match_data, data, notifier)

    def eventfd_del(self, section: Section, match_data: bool, data: int, notifier: int) -> None:
        self.target.eventfd_del(section, match_data, data, notifier)


class Mirror:
    """Keeps a model of one live VM in sync and tells subscribers what changed.

    ::

        async with attach(parse_target("/run/vm1.qmp")) as live:
            mirror = Mirror(live.monitor, label="vm1", interval=1.0)
            mirror.subscribe(MyListener(), key=("memory", "system", None, 0))
            await mirror.run(duration=60)

    :param monitor: a connected monitor (read-only is enough unless *pause*).
    :param interval: seconds between polls.
    :param pause: stop a running VM for each reading (monitor needs control).
    :param read_timeout: seconds one reading may take before it counts as stalled.
    :param max_failures: failed readings in a row before the mirror gives up.
    :param backoff_max: longest wait between retries, seconds.
    :param events: the QMP events that trigger a reading.
    :param accel: accelerator for the validation (``auto``: decided as ``check`` does).
    :param strict: validate without inference from QEMU's ``-f``.
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        label: str = "",
        interval: float = 1.0,
        pause: bool = False,
        max_tries: int = DEFAULT_MAX_TRIES,
        read_timeout: float = 30.0,
        max_failures: int = 5,
        backoff_max: float = 30.0,
        events: Iterable[str] = TOPOLOGY_EVENTS,
        accel: str = "auto",
        strict: bool = False,
        command_line: Sequence[str] = (),
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.monitor = monitor
        self.label = label
        self.interval = interval
        self.pause = pause
        self.max_tries = max_tries
        self.read_timeout = read_timeout
        self.max_failures = max_failures
        self.backoff_max = backoff_max
        self.events = frozenset(events)
        self.accel = accel
        self.strict = strict
        self.command_line = tuple(command_line)
        self.listeners = Listeners()
        self.observers: list[MirrorObserver] = []
        #: The latest reading that was delivered.
        self.frame: Frame | None = None
        #: The transitions of the latest transaction.
        self.last_transitions: list[Transition] = []
        #: What caused the reading being delivered (or the last one).
        self.trigger: Trigger | None = None
        #: Readings taken, including those that found nothing new.
        self.readings = 0
        #: Readings whose validation failed.
        self.mismatches = 0
        self._spaces: dict[ASKey, AddressSpace] = {}
        self._keys: dict[int, ASKey] = {}
        self._everywhere: list[tuple[MemoryListener, list[_Tap]]] = []
        self._keyed: dict[int, ASKey] = {}
        self._info: MachineInfo | None = None
        self._wake: asyncio.Event | None = None
        self._kicked = False
        self._lock: asyncio.Lock | None = None
        self._follow: tuple[contextlib.ExitStack, EventFeed, asyncio.Task[None]] | None = None

    # ----------------------------------------------------------- address spaces

    def address_space(self, key: ASKey) -> AddressSpace:
        """The stable AddressSpace for *key* (created, root ``None``, if never seen)."""
        a = self._spaces.get(key)
        if a is None:
            a = AddressSpace(key[0], None)
            self._spaces[key] = a
            self._keys[id(a)] = key
            for listener, taps in self._everywhere:
                tap = _Tap(listener, a)
                taps.append(tap)
                self.listeners.register(tap, a)
        return a

    def key_of(self, address_space: AddressSpace) -> ASKey | None:
        """The key of one of the mirror's stable address spaces."""
        return self._keys.get(id(address_space))

    def address_spaces(self) -> list[tuple[ASKey, AddressSpace]]:
        """Every stable address space the mirror knows, in first-seen order."""
        return list(self._spaces.items())

    def current_ranges(self, key: ASKey) -> list[FlatRange]:
        """The latest reading's FlatView of the address space *key* (empty if none)."""
        for t in self.last_transitions:
            if t.key == key:
                return list(t.new_ranges)
        return []

    # -------------------------------------------------------------- subscribing

    def subscribe(self, listener: MemoryListener, key: ASKey | None = None) -> None:
        """Register *listener* on the address space *key*, or on every address space.

        Like ``memory_listener_register``: the listener hears ``begin``, a
        ``region_add`` for every range the address space has now, and ``commit``
        right away; then every transaction. With *key* ``None`` it hears every address
        space, including those that appear later, and ``begin``/``commit`` once per
        transaction.
        """
        if key is not None:
            self._keyed[id(listener)] = key
            self.listeners.register(listener, self.address_space(key),
                                    current=self.current_ranges(key))
            return
        self.listeners.register(listener, None)
        taps: list[_Tap] = []
        self._everywhere.append((listener, taps))
        listener.begin()
        for k, a in self._spaces.items():
            tap = _Tap(listener, a)
            taps.append(tap)
            self.listeners.register(tap, a, current=self.current_ranges(k))
        listener.commit()

    def unsubscribe(self, listener: MemoryListener) -> None:
        """Unregister, replaying the removal of what the listener was told about."""
        for n, (who, taps) in enumerate(self._everywhere):
            if who is listener:
                listener.begin()
                for tap in taps:
                    key = self._keys[id(tap.address_space)]
                    self.listeners.unregister(tap, current=self.current_ranges(key))
                listener.commit()
                self.listeners.unregister(listener)
                del self._everywhere[n]
                return
        keyed = self._keyed.pop(id(listener), None)
        self.listeners.unregister(
            listener, current=self.current_ranges(keyed) if keyed is not None else [])

    # ----------------------------------------------------------------- reading

    def kick(self) -> None:
        """Ask :meth:`run` for a reading now (e.g. right after your own ``device_add``)."""
        self._kicked = True
        if self._wake is not None:
            self._wake.set()

    async def _read(self) -> Snapshot:
        if self._info is None:
            self._info = await self.monitor.describe()
        return await take_snapshot(self.monitor, pause=self.pause, max_tries=self.max_tries,
                                   label=self.label, known=self._info,
                                   command_line=self.command_line)

    def _frame(self, snapshot: Snapshot, trigger: Trigger) -> Frame:
        result = check(snapshot.tree, snapshot.flat, accel=self.accel, strict=self.strict)
        return Frame(self.readings, snapshot, result, render_machine(result.machine), trigger)

    async def refresh(self, trigger: Trigger | None = None) -> Frame | None:
        """Read the VM now and deliver what changed.

        :return: the new frame, or ``None`` when QEMU's texts are the same as last time
            (nothing is delivered then).
        :raise QmirrorError: the reading failed (no retry here; :meth:`run` retries).
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if trigger is None:
                trigger = Trigger("start" if self.frame is None else "kick")
            try:
                async with asyncio.timeout(self.read_timeout):
                    snapshot = await self._read()
            except TimeoutError as exc:
                raise MonitorTimeout(f"{self.label or 'monitor'}: no complete reading within "
                                     f"{self.read_timeout:g}s (monitor stalled?)") from exc
            self.readings += 1
            prev = self.frame
            if (prev is not None and snapshot.tree == prev.snapshot.tree
                    and snapshot.flat == prev.snapshot.flat):
                return None
            frame = self._frame(snapshot, trigger)
            if not frame.ok:
                self.mismatches += 1
            self._deliver(frame, prev)
            return frame

    def _deliver(self, frame: Frame, prev: Frame | None) -> None:
        trans = transitions(prev.machine if prev is not None else None, frame.machine,
                            prev.views if prev is not None else None, frame.views)
        for t in trans:
            self.address_space(t.key)
        self.trigger = frame.trigger
        for obs in list(self.observers):
            if prev is None:
                obs.on_start(self, frame)
            obs.on_reading(self, frame, prev)
        self.listeners.call_global("begin")
        for t in trans:
            a = self._spaces[t.key]
            if self.listeners.listening_on(a):
                self.listeners.deliver_topology(a, t.events)
        self.listeners.call_global("commit")
        for t in trans:
            self._spaces[t.key].root = t.new.root if t.new is not None else None
        self.frame = frame
        self.last_transitions = trans

    # --------------------------------------------------------------------- loop

    def _report(self, exc: BaseException, trigger: Trigger, failures: int) -> ErrorReport:
        gone = not self.monitor.connected
        kind: Literal["timeout", "gone", "failed"] = (
            "gone" if gone else "timeout" if isinstance(exc, MonitorTimeout) else "failed")
        fatal = gone or failures >= self.max_failures
        retry = None if fatal else min(self.backoff_max, self.interval * 2 ** (failures - 1))
        message = str(exc)
        if gone and "went away" not in message:
            message = f"QEMU went away (connection closed): {message}"
        return ErrorReport(kind, message, fatal, failures, retry, trigger, exc)

    async def __aenter__(self) -> Mirror:
        """Start hearing QMP events (and noticing a lost connection) now, before
        :meth:`run`: e.g. to take a first reading, then ``cont`` a VM, and not miss its
        ``RESUME``."""
        if self._follow is not None:
            raise QmirrorError("this mirror is already following its VM")
        stack = contextlib.ExitStack()
        wake = asyncio.Event()
        feed = stack.enter_context(self.monitor.events(self.events, wakeup=wake))
        closed = asyncio.create_task(self._watch_closed(wake))
        self._follow = (stack, feed, closed)
        self._wake = wake
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        follow, self._follow, self._wake = self._follow, None, None
        if follow is None:
            return
        stack, _, closed = follow
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closed
        stack.close()

    async def run(self, *, count: int | None = None, duration: float | None = None) -> str:
        """Poll and follow events until *count* readings were taken, *duration* seconds
        passed, or the VM is gone.

        The first reading is taken at once if there is none yet; otherwise the mirror
        waits for the next poll, event or kick (events heard since ``async with`` began
        count).

        :param count: stop once this many readings were taken in all (the first one
            included).
        :param duration: stop after this many seconds.
        :return: why it stopped: ``"count"`` or ``"duration"``.
        :raise QmirrorError: the VM went away, or readings kept failing (after the
            observers heard about it).
        """
        if self._follow is None:
            async with self:
                return await self.run(count=count, duration=duration)
        _, feed, _ = self._follow
        wake = self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        failures = 0
        reason = "interrupted"
        try:
            trigger: Trigger | None = Trigger("start") if self.frame is None else None
            delay = self.interval
            while True:
                if trigger is not None:
                    try:
                        await self.refresh(trigger)
                        failures = 0
                        delay = self.interval
                    except QmirrorError as exc:
                        failures += 1
                        report = self._report(exc, trigger, failures)
                        for obs in list(self.observers):
                            obs.on_error(self, report)
                        if report.fatal:
                            reason = "gone" if report.kind == "gone" else "failed"
                            raise
                        assert report.retry_in is not None
                        delay = report.retry_in
                if count is not None and self.readings >= count:
                    reason = "count"
                    return reason
                trigger = await self._wait(feed, wake, loop.time() + delay, deadline)
                if trigger is None:
                    reason = "duration"
                    return reason
        finally:
            for obs in list(self.observers):
                obs.on_end(self, reason)

    async def _watch_closed(self, wake: asyncio.Event) -> None:
        await self.monitor.wait_closed()
        wake.set()

    async def _wait(self, feed: EventFeed, wake: asyncio.Event, poll_at: float,
                    deadline: float | None) -> Trigger | None:
        """Sleep until the next poll, an event, a kick or a lost connection; ``None``
        when the deadline comes first."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            until = poll_at if deadline is None else min(poll_at, deadline)
            if not wake.is_set() and until > now:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(until - now):
                        await wake.wait()
            if wake.is_set():
                wake.clear()
                events = feed.clear()
                if events:
                    return Trigger.from_events(events)
                if self._kicked:
                    self._kicked = False
                    return Trigger("kick")
                if not self.monitor.connected:
                    return Trigger("poll")  # the reading will report the loss
                continue
            if deadline is not None and loop.time() >= deadline:
                return None
            if loop.time() >= poll_at:
                return Trigger("poll")
