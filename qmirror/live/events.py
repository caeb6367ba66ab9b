"""QMP events as qmirror hands them out: :class:`QmpEvent`, in a bounded :class:`EventFeed`.

qemu.qmp's ``Message`` stays behind this module: what the mirror and its users get is
qmirror's own frozen event type.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from qemu.qmp import EventListener, Message


__all__ = ["DEFAULT_EVENT_BACKLOG", "EventFeed", "QmpEvent"]

#: Pending events an :class:`EventFeed` keeps before it drops the oldest.
DEFAULT_EVENT_BACKLOG: Final = 256


@dataclass(frozen=True, slots=True)
class QmpEvent:
    """One QMP event as qmirror hands it out (not qemu.qmp's ``Message``).

    :param name: ``RESET``, ``DEVICE_DELETED``, ...
    :param timestamp: QEMU's ``{"seconds": ..., "microseconds": ...}``, if it sent one.
    :param data: the event's ``data`` member (empty if none).
    """

    name: str
    timestamp: dict[str, int] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, message: Message) -> QmpEvent:
        stamp = message.get("timestamp")
        when = None
        if isinstance(stamp, dict):
            when = {
                "seconds": int(stamp.get("seconds", 0)),
                "microseconds": int(stamp.get("microseconds", 0)),
            }
        data = message.get("data")
        return cls(str(message["event"]), when, dict(data) if isinstance(data, dict) else {})


class _FeedListener(EventListener):
    """The qemu.qmp side of an :class:`EventFeed`: hands accepted events over, keeps none."""

    def __init__(self, feed: EventFeed, names: list[str] | None) -> None:
        super().__init__(names)
        self.feed = feed

    async def put(self, event: Message) -> None:
        """Called by qemu.qmp's reader for every event (see :meth:`accept`)."""
        if self.accept(event):
            self.feed.put(QmpEvent.of(event))

    @property
    def history(self) -> tuple[Message, ...]:
        """Always empty: this listener keeps no history (that is its point)."""
        return ()


class EventFeed:
    """QMP events as :class:`QmpEvent`, with a bounded backlog and no history.

    qemu.qmp's own :class:`~qemu.qmp.EventListener` appends every event it hears to an
    unbounded queue and an unbounded history; a long-running watcher would grow without
    end. This one keeps at most *backlog* pending events (dropping the oldest and
    counting them in :attr:`dropped`), and sets *wakeup* on every event it accepts.

    :param names: event names to hear (``None``: all).
    :param backlog: pending events kept before the oldest are dropped.
    :param wakeup: an event to set when something arrives (e.g. a poll loop's).
    """

    def __init__(
        self,
        names: Iterable[str] | None = None,
        *,
        backlog: int = DEFAULT_EVENT_BACKLOG,
        wakeup: asyncio.Event | None = None,
    ) -> None:
        self.listener = _FeedListener(self, None if names is None else list(names))
        self._pending: deque[QmpEvent] = deque(maxlen=backlog)
        self.wakeup = wakeup if wakeup is not None else asyncio.Event()
        #: Events dropped because the backlog was full.
        self.dropped = 0

    def put(self, event: QmpEvent) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(event)
        self.wakeup.set()

    def push(self, message: Message) -> None:
        """Take a QMP event message that came some other way than through qemu.qmp's
        reader (libvirt's domain events), if it is one of the names this feed hears."""
        if self.listener.accept(message):
            self.put(QmpEvent.of(message))

    async def get(self) -> QmpEvent:
        """The oldest pending event, waiting for one if there is none (no timeout:
        wrap it in ``asyncio.timeout``)."""
        while not self._pending:
            self.wakeup.clear()
            await self.wakeup.wait()
        return self._pending.popleft()

    def empty(self) -> bool:
        return not self._pending

    def clear(self) -> list[QmpEvent]:
        """Take every pending event, oldest first."""
        taken = list(self._pending)
        self._pending.clear()
        return taken

    @property
    def history(self) -> tuple[QmpEvent, ...]:
        """Always empty: this feed keeps no history (that is its point)."""
        return ()
