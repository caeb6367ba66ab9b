"""The mirror: a model of a live VM's memory map, kept in sync, told as MemoryListener calls.

:class:`Mirror` reads the VM (a consistent :class:`~qmirror.live.snapshot.Snapshot`) on a
poll interval and at once when QEMU announces an event that may change the map. Each
reading whose texts differ from the previous one is

1. rebuilt and validated: :func:`qmirror.verify.check.check` renders our FlatViews and
   compares them with QEMU's ``-f`` of the same moment (a mismatch is reported, not
   hidden, and the reading is still used);
2. fed to the mirror's :class:`~qmirror.sim.replica.Replica`, the pure state that
   diffs it per AddressSpace against the previous reading the way QEMU's topology
   update does and calls the subscribers (global ``begin``; per address space
   ``region_del``, then ``region_nop``/``log_*``/``region_add``; global ``commit``).
   See :mod:`qmirror.sim.replica` for the order and for the identity of address
   spaces and sections across readings.

A reading identical to the previous one is no transaction at all.

**Events that trigger a reading** (:data:`TOPOLOGY_EVENTS`; QEMU 7.2 names): no QMP
event reports a memory-map change as such, so the mirror listens for those after which
the map has probably changed, and polls for the rest:

==============================  ===================================================
``DEVICE_DELETED``              a device is gone: its regions and its bus-master
                                address space with it
``DEVICE_ADDED``                (from libvirt only) a device was hot-plugged
``RESET``                       firmware-visible state is back to power-on: BARs,
                                PCI command registers, PAM, SMRAM
``STOP``, ``RESUME``            run state changed: a stopped guest has a map that
                                holds still; a resumed one may start changing it
``SUSPEND``, ``WAKEUP``         S3: firmware reprograms the chipset on wake-up
``MEMORY_DEVICE_SIZE_CHANGE``   virtio-mem plugged or unplugged memory
``SHUTDOWN``                    QEMU is about to exit (or, with ``-no-shutdown``,
                                to stop): read now, or notice it is gone
==============================  ===================================================

``device_add`` raises no event at all in QEMU 7.2 (there is no ``DEVICE_ADDED``): a new
device is seen at the next poll, or at once if whoever added it calls :meth:`Mirror.kick`;
libvirt does report added devices, and :mod:`qmirror.live.libvirt` feeds them as
``DEVICE_ADDED``, which is in the set for that reason. Not in the set: ``BALLOON_CHANGE``
changes how much memory the guest has given back, not the regions (the balloon discards
pages inside ``pc.ram``).
``ACPI_DEVICE_OST`` reports the guest's answer after the map already changed. Guest
programming of BARs, PAM or SMRAM raises nothing: polling finds it.

Events come through a bounded :class:`~qmirror.live.events.EventFeed` (as qmirror's own
:class:`~qmirror.live.events.QmpEvent`) and are drained at every wake-up (several events in
a burst make one reading), so memory stays bounded however long the mirror runs.

**Faults.** A reading that times out (a stalled monitor) or fails (a reply that is not
``info mtree``, a map that never holds still) is reported to observers and retried with
exponential backoff; after ``max_failures`` failures in a row the mirror gives up. A
lost connection (QEMU gone) is reported and ends the mirror at once; :meth:`Mirror.run`
then raises.

What the mirror tells ``qmirror watch`` (JSON Lines or text) is written by
:mod:`qmirror.live.writers`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from qmirror.core.model import AddressSpace, Machine
from qmirror.core.render import FlatRange, FlatView
from qmirror.errors import MirrorError, MonitorTimeout, QmirrorError
from qmirror.live.events import EventFeed, QmpEvent
from qmirror.live.qmp import MachineInfo, Monitor
from qmirror.live.snapshot import DEFAULT_MAX_TRIES, Snapshot, take_snapshot
from qmirror.sim.listener import Listeners, MemoryListener
from qmirror.sim.replica import Replica
from qmirror.sim.topology import ASKey, Transition
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
TOPOLOGY_EVENTS: Final = frozenset(
    {
        "DEVICE_DELETED",
        "DEVICE_ADDED",
        "RESET",
        "STOP",
        "RESUME",
        "SUSPEND",
        "WAKEUP",
        "MEMORY_DEVICE_SIZE_CHANGE",
        "SHUTDOWN",
    }
)


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
    def from_events(cls, events: Sequence[QmpEvent]) -> Trigger:
        first = events[0]
        return cls("event", first.name, first.timestamp, tuple(e.name for e in events))


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
        #: The VM's state as listeners see it; the mirror only feeds it.
        self.replica = Replica()
        self.observers: list[MirrorObserver] = []
        #: The latest reading that was delivered.
        self.frame: Frame | None = None
        #: What caused the reading being delivered (or the last one).
        self.trigger: Trigger | None = None
        #: Readings taken, including those that found nothing new.
        self.readings = 0
        #: Readings whose validation failed.
        self.mismatches = 0
        self._info: MachineInfo | None = None
        self._wake: asyncio.Event | None = None
        self._kicked = False
        self._lock: asyncio.Lock | None = None
        self._follow: tuple[contextlib.ExitStack, EventFeed, asyncio.Task[None]] | None = None

    # ------------------------------------------ address spaces, subscribing (the replica's)

    @property
    def listeners(self) -> Listeners:
        return self.replica.listeners

    @property
    def last_transitions(self) -> list[Transition]:
        """The transitions of the latest transaction."""
        return self.replica.last_transitions

    def address_space(self, key: ASKey) -> AddressSpace:
        """See :meth:`Replica.address_space <qmirror.sim.replica.Replica.address_space>`."""
        return self.replica.address_space(key)

    def key_of(self, address_space: AddressSpace) -> ASKey | None:
        return self.replica.key_of(address_space)

    def address_spaces(self) -> list[tuple[ASKey, AddressSpace]]:
        return self.replica.address_spaces()

    def current_ranges(self, key: ASKey) -> list[FlatRange]:
        return self.replica.current_ranges(key)

    def subscribe(self, listener: MemoryListener, key: ASKey | None = None) -> None:
        """See :meth:`Replica.subscribe <qmirror.sim.replica.Replica.subscribe>`."""
        self.replica.subscribe(listener, key)

    def unsubscribe(self, listener: MemoryListener) -> None:
        self.replica.unsubscribe(listener)

    # ----------------------------------------------------------------- reading

    def kick(self) -> None:
        """Ask :meth:`run` for a reading now (e.g. right after your own ``device_add``)."""
        self._kicked = True
        if self._wake is not None:
            self._wake.set()

    async def _read(self) -> Snapshot:
        if self._info is None:
            self._info = await self.monitor.describe()
        return await take_snapshot(
            self.monitor,
            pause=self.pause,
            max_tries=self.max_tries,
            label=self.label,
            known=self._info,
            command_line=self.command_line,
        )

    def _frame(self, snapshot: Snapshot, trigger: Trigger) -> Frame:
        result = check(snapshot.tree, snapshot.flat, accel=self.accel, strict=self.strict)
        return Frame(self.readings, snapshot, result, result.views, trigger)

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
                raise MonitorTimeout(
                    f"{self.label or 'monitor'}: no complete reading within "
                    f"{self.read_timeout:g}s (monitor stalled?)"
                ) from exc
            self.readings += 1
            prev = self.frame
            if (
                prev is not None
                and snapshot.tree == prev.snapshot.tree
                and snapshot.flat == prev.snapshot.flat
            ):
                return None
            frame = self._frame(snapshot, trigger)
            if not frame.ok:
                self.mismatches += 1
            self._deliver(frame, prev)
            return frame

    def _deliver(self, frame: Frame, prev: Frame | None) -> None:
        self.trigger = frame.trigger
        for obs in list(self.observers):
            if prev is None:
                obs.on_start(self, frame)
            obs.on_reading(self, frame, prev)
        self.replica.receive(frame)
        self.frame = frame

    # --------------------------------------------------------------------- loop

    def _report(self, exc: BaseException, trigger: Trigger, failures: int) -> ErrorReport:
        gone = not self.monitor.connected
        kind: Literal["timeout", "gone", "failed"] = (
            "gone" if gone else "timeout" if isinstance(exc, MonitorTimeout) else "failed"
        )
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
            raise MirrorError("this mirror is already following its VM")
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

    async def _wait(
        self, feed: EventFeed, wake: asyncio.Event, poll_at: float, deadline: float | None
    ) -> Trigger | None:
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
