"""The mirror's sans-I/O replica, fed saved readings: no QEMU, no event loop.

Two captures of an i440FX VM (``pc``: at reset; ``pc-booted``: after SeaBIOS programmed
BARs, PAM and SMRAM, with a NIC, a bridge and more devices) are fed one after the other;
what the listeners hear is checked against QEMU's own ``info mtree -f`` of each capture,
read with the test helpers' regular expression (not qmirror's parser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from livehelpers import qemu_ranges

from qmirror.sim.listener import MemoryListener, Section
from qmirror.sim.replica import Event, Replica
from qmirror.sim.topology import ASKey
from qmirror.verify.reading import Reading, read


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64"
PC, BOOTED = FIXTURES / "pc", FIXTURES / "pc-booted"
MEMORY: ASKey = ("memory", "system", None, 0)


def text(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def reading(capture: Path) -> Reading:
    return read(
        text(capture / "info-mtree-o-D.txt"),
        text(capture / "info-mtree-f-o.txt"),
        label=capture.name,
    )


def qemu_memory(capture: Path, name: str = "memory") -> set[tuple[int, int, str, int]]:
    """``(start, last, name, offset)`` of QEMU's own FlatView of an address space."""
    return {(s, e, n, o) for s, e, _, n, o in qemu_ranges(text(capture / "info-mtree-f.txt"), name)}


class Recorder(MemoryListener):
    """Every callback as ``(callback, key, start, last, name, offset)``."""

    def __init__(self, replica: Replica) -> None:
        super().__init__()
        self.replica = replica
        self.calls: list[tuple[Any, ...]] = []

    def _range(self, kind: str, s: Section) -> None:
        assert s.mr is not None
        # Sections carry the replica's stable address space, never a reading's.
        key = self.replica.key_of(s.address_space)
        assert key is not None and self.replica.address_space(key) is s.address_space
        start = s.offset_within_address_space
        self.calls.append(
            (kind, key, start, start + s.size - 1, s.mr.label, s.offset_within_region)
        )

    def begin(self) -> None:
        self.calls.append(("begin",))

    def commit(self) -> None:
        self.calls.append(("commit",))

    def region_add(self, section: Section) -> None:
        self._range("region_add", section)

    def region_del(self, section: Section) -> None:
        self._range("region_del", section)

    def region_nop(self, section: Section) -> None:
        self._range("region_nop", section)

    def of(self, kind: str, key: ASKey = MEMORY) -> set[tuple[Any, ...]]:
        return {c[2:] for c in self.calls if c[0] == kind and c[1] == key}


def as_calls(events: list[Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in events:
        if e.section is None:
            out.append((e.kind,))
            continue
        s = e.section
        assert s.mr is not None
        start = s.offset_within_address_space
        out.append((e.kind, e.key, start, start + s.size - 1, s.mr.label, s.offset_within_region))
    return out


def test_the_first_reading_is_all_additions() -> None:
    replica = Replica()
    everywhere, keyed = Recorder(replica), Recorder(replica)
    replica.subscribe(everywhere)
    replica.subscribe(keyed, MEMORY)
    assert everywhere.calls == [("begin",), ("commit",)]  # the replay of nothing
    everywhere.calls.clear()
    keyed.calls.clear()

    events = replica.receive(reading(PC))

    assert {e.kind for e in events[1:-1]} == {"region_add"}
    # Nothing was logged before the first reading; after it, what the range logs.
    assert all(
        e.old_mask == 0 and e.new_mask == e.section.dirty_log_mask
        for e in events[1:-1]
        if e.section is not None
    )
    assert as_calls(events) == everywhere.calls  # one listener hears the events in order
    assert everywhere.of("region_add") == qemu_memory(PC)
    assert keyed.calls[0] == ("begin",) and keyed.calls[-1] == ("commit",)
    assert keyed.of("region_add") == qemu_memory(PC)
    assert replica.address_space(MEMORY).root is not None


def test_the_next_reading_is_a_topology_update() -> None:
    replica = Replica()
    replica.receive(reading(PC))
    everywhere, keyed = Recorder(replica), Recorder(replica)
    replica.subscribe(everywhere)
    replica.subscribe(keyed, MEMORY)
    # A late subscriber hears the current ranges replayed.
    assert keyed.of("region_add") == qemu_memory(PC)
    known = {k for k, _ in replica.address_spaces()}
    stable = replica.address_space(MEMORY)
    everywhere.calls.clear()
    keyed.calls.clear()

    booted = reading(BOOTED)
    events = replica.receive(booted)

    before, after = qemu_memory(PC), qemu_memory(BOOTED)
    assert before != after  # SeaBIOS moved things: the test has something to see
    assert as_calls(events) == everywhere.calls
    kept = everywhere.of("region_nop")
    assert kept | everywhere.of("region_add") == after
    assert kept | everywhere.of("region_del") == before
    assert kept <= before & after
    assert keyed.of("region_del") == everywhere.of("region_del")
    # QEMU's pass 1 (all removals of an address space) before pass 2.
    mem = [c[0] for c in everywhere.calls if len(c) > 1 and c[1] == MEMORY]
    assert "region_del" not in mem[mem.index("region_add") :]
    # The booted VM has more devices: their (bus master) address spaces are new, and
    # whatever they map is all additions.
    new = {k for k, _ in replica.address_spaces()} - known
    assert {k[0] for k in new} == {"pci-bridge", "virtio-net-pci", "virtio-rng-pci"}
    assert all(replica.address_space(k).root is not None for k in new)
    assert all(c[0] == "region_add" for c in everywhere.calls if len(c) > 1 and c[1] in new)
    assert replica.address_space(MEMORY) is stable
    # ... whose root is now the new reading's (it was the first reading's).
    assert stable.root is next(a.root for a in booted.machine.address_spaces if a.name == "memory")

    keyed.calls.clear()
    replica.unsubscribe(keyed)
    assert keyed.of("region_del") == after  # the removal of what it was told, replayed


def test_unsubscribing_everywhere_replays_the_removal_of_every_address_space() -> None:
    replica = Replica()
    everywhere = Recorder(replica)
    replica.subscribe(everywhere)
    replica.receive(reading(PC))
    replica.receive(reading(BOOTED))
    everywhere.calls.clear()
    replica.unsubscribe(everywhere)
    assert everywhere.calls[0] == ("begin",) and everywhere.calls[-1] == ("commit",)
    assert {c[0] for c in everywhere.calls[1:-1]} == {"region_del"}
    assert everywhere.of("region_del") == qemu_memory(BOOTED)
    # Gone for good: the next reading reaches nobody.
    everywhere.calls.clear()
    assert replica.receive(reading(PC))
    assert everywhere.calls == []
