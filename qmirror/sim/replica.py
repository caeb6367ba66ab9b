"""A replica of one VM's memory map over time, sans I/O: fed readings, it emits listener calls.

:class:`Replica` is the state that follows a VM from one reading to the next, the way
websockets' ``Protocol`` is the state of a connection: it does no I/O, waits for
nothing and knows no clock. Whoever reads the VM (the live mirror, a test with two
saved readings) hands it each new reading with :meth:`Replica.receive`; the replica
diffs it per AddressSpace against the previous one the way QEMU's topology update does
(:func:`qmirror.sim.topology.transitions`: removals first, then additions; unchanged
ranges are ``region_nop``), calls its subscribed :class:`~qmirror.sim.listener.MemoryListener`\\ s
(global ``begin``; per address space in creation order ``region_del`` in Reverse
priority order, then ``region_nop``/``log_*``/``region_add`` Forward; global ``commit``)
and returns the same transaction as a list of :class:`Event`.

**Identity.** Two readings share no Python objects, so ranges are matched by value
(:func:`qmirror.sim.topology.same_by_value`), address spaces by
:data:`~qmirror.sim.topology.ASKey` (name, root, root's alias target, index among
equals). The ``address_space`` of every :class:`~qmirror.sim.listener.Section` a
subscriber receives is the replica's own stable
:class:`~qmirror.core.model.AddressSpace` for that key, the same object for the
replica's whole life (as QEMU's AddressSpace outlives its FlatViews), whose ``root`` is
the root region of the latest reading received (updated after ``commit``); an address
space that went away keeps its object with ``root = None`` and comes back to it. A
section's ``mr`` is the region of the reading the range comes from: the old reading for
``region_del``, the new one for ``region_add`` and ``region_nop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from qmirror.core.model import AddressSpace, Machine
from qmirror.core.render import FlatRange, FlatView
from qmirror.sim.listener import Listeners, MemoryListener, Section
from qmirror.sim.topology import ASKey, Transition, transitions


__all__ = ["Event", "EventKind", "Rendered", "Replica"]

EventKind = Literal[
    "begin", "commit", "region_add", "region_del", "region_nop", "log_start", "log_stop"
]

#: TopologyEvent kinds as callback names.
_CALLBACK: dict[str, EventKind] = {
    "add": "region_add",
    "del": "region_del",
    "nop": "region_nop",
    "log_start": "log_start",
    "log_stop": "log_stop",
}


#: Callbacks QEMU calls tail to head (the others head to tail).
_REVERSE = frozenset({"region_del", "log_stop"})


class Rendered(Protocol):
    """A reading as the replica needs it: the model and its FlatViews
    (:class:`qmirror.verify.reading.Reading`, the mirror's ``Frame``, ...)."""

    @property
    def machine(self) -> Machine: ...

    @property
    def views(self) -> Sequence[FlatView]: ...


@dataclass(frozen=True, slots=True)
class Event:
    """One MemoryListener call of a transaction, in the order QEMU makes them.

    :param kind: the callback's name.
    :param key: the address space (``None`` for ``begin`` and ``commit``).
    :param section: the range (``None`` for ``begin`` and ``commit``).
    :param old_mask: for ``log_start``/``log_stop``: the dirty-log mask before.
    :param new_mask: ... and after.
    """

    kind: EventKind
    key: ASKey | None = None
    section: Section | None = None
    old_mask: int = 0
    new_mask: int = 0


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


class Replica:
    """The listener-facing state of one VM followed over readings. Pure."""

    def __init__(self) -> None:
        self.listeners = Listeners()
        #: The latest reading received.
        self.reading: Rendered | None = None
        #: The transitions of the latest transaction.
        self.last_transitions: list[Transition] = []
        self._spaces: dict[ASKey, AddressSpace] = {}
        self._keys: dict[AddressSpace, ASKey] = {}
        # Listeners are the caller's objects, maybe unhashable: found by identity.
        self._everywhere: list[tuple[MemoryListener, list[_Tap]]] = []
        self._keyed: list[tuple[MemoryListener, ASKey]] = []

    # ----------------------------------------------------------- address spaces

    def address_space(self, key: ASKey) -> AddressSpace:
        """The stable AddressSpace for *key* (created, root ``None``, if never seen)."""
        a = self._spaces.get(key)
        if a is None:
            a = self._spaces[key] = AddressSpace(key[0], None)
            self._keys[a] = key
            for listener, taps in self._everywhere:
                tap = _Tap(listener, a)
                taps.append(tap)
                self.listeners.register(tap, a)
        return a

    def key_of(self, address_space: AddressSpace) -> ASKey | None:
        """The key of one of the replica's stable address spaces."""
        return self._keys.get(address_space)

    def address_spaces(self) -> list[tuple[ASKey, AddressSpace]]:
        """Every stable address space the replica knows, in first-seen order."""
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
            self._keyed.append((listener, key))
            self.listeners.register(
                listener, self.address_space(key), current=self.current_ranges(key)
            )
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
                    self.listeners.unregister(
                        tap, current=self.current_ranges(self._keys[tap.address_space])
                    )
                listener.commit()
                self.listeners.unregister(listener)
                del self._everywhere[n]
                return
        for n, (who, key) in enumerate(self._keyed):
            if who is listener:
                del self._keyed[n]
                self.listeners.unregister(listener, current=self.current_ranges(key))
                return
        self.listeners.unregister(listener)

    # ---------------------------------------------------------------- readings

    def receive(self, reading: Rendered) -> list[Event]:
        """Take the next reading: call the subscribers and return the transaction.

        The first reading is all ``region_add``. A reading equal to the previous one
        is a transaction of ``region_nop``\\ s only (the live mirror does not feed
        those: texts equal to the last ones are no reading for it).
        """
        prev = self.reading
        trans = transitions(
            prev.machine if prev is not None else None,
            reading.machine,
            prev.views if prev is not None else None,
            reading.views,
        )
        events = [Event("begin")]
        self.listeners.call_global("begin")
        for t in trans:
            a = self.address_space(t.key)
            listening = self.listeners.listening_on(a)
            for ev in t.events:
                old = ev.old.dirty_log_mask if ev.old is not None else 0
                event = Event(
                    _CALLBACK[ev.kind],
                    t.key,
                    Section.of(a, ev.range),
                    old,
                    ev.range.dirty_log_mask,
                )
                events.append(event)
                if listening:
                    self._deliver(a, event)
        events.append(Event("commit"))
        self.listeners.call_global("commit")
        for t in trans:
            self._spaces[t.key].root = t.new.root if t.new is not None else None
        self.reading = reading
        self.last_transitions = trans
        return events

    def _deliver(self, a: AddressSpace, e: Event) -> None:
        """One region callback to *a*'s listeners, in QEMU's direction for it."""
        reverse = e.kind in _REVERSE
        if e.kind in ("log_start", "log_stop"):
            self.listeners.call(a, e.kind, e.section, e.old_mask, e.new_mask, reverse=reverse)
        else:
            self.listeners.call(a, e.kind, e.section, reverse=reverse)
