"""The mirror against real QEMUs: hotplug, guest-side changes, events, faults, JSON Lines.

What the mirror must report is read back from QEMU itself: the address QEMU gave a
hot-plugged DIMM, and the ranges of its own ``info mtree -f`` before and after a change
(parsed here with a regular expression of the test's own).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from typing import Any

import pytest
from livehelpers import LaunchVM, QmirrorProcess, qemu_ranges, run_qmirror, wait_for

from qmirror.errors import QmirrorError
from qmirror.live.mirror import ErrorReport, Frame, Mirror, MirrorObserver
from qmirror.live.qmp import Monitor
from qmirror.sim.listener import MemoryListener, Section
from qmirror.sim.topology import ASKey


pytestmark = pytest.mark.qemu

MEMORY: ASKey = ("memory", "system", None, 0)


class Recorder(MemoryListener, MirrorObserver):
    """Every callback, as ``(event, key, start, last, name, offset, readonly)``, plus
    the frames and errors the mirror reported."""

    def __init__(self, mirror: Mirror) -> None:
        super().__init__()
        self.mirror = mirror
        self.calls: list[tuple[Any, ...]] = []
        self.frames: list[Frame] = []
        self.errors: list[ErrorReport] = []
        self.ends: list[str] = []
        #: ``id()`` of every address space object a section carried.
        self.spaces: set[int] = set()

    def _range(self, event: str, s: Section) -> None:
        assert s.mr is not None
        key = self.mirror.key_of(s.address_space)
        self.spaces.add(id(s.address_space))
        start = s.offset_within_address_space
        self.calls.append(
            (event, key, start, start + s.size - 1, s.mr.label, s.offset_within_region, s.readonly)
        )

    def begin(self) -> None:
        self.calls.append(("begin",))

    def commit(self) -> None:
        self.calls.append(("commit",))

    def region_add(self, section: Section) -> None:
        self._range("add", section)

    def region_del(self, section: Section) -> None:
        self._range("del", section)

    def region_nop(self, section: Section) -> None:
        self._range("nop", section)

    def on_reading(self, mirror: Mirror, frame: Frame, previous: Frame | None) -> None:
        self.frames.append(frame)

    def on_error(self, mirror: Mirror, report: ErrorReport) -> None:
        self.errors.append(report)

    def on_end(self, mirror: Mirror, reason: str) -> None:
        self.ends.append(reason)

    def mark(self) -> int:
        return len(self.calls)

    def since(self, mark: int, event: str, key: ASKey | None = MEMORY) -> set[tuple[Any, ...]]:
        """``(start, last, name, offset)`` of the *event* calls after *mark*."""
        return {c[2:6] for c in self.calls[mark:] if c[0] == event and (key is None or c[1] == key)}


def as_calls(ranges: set[tuple[int, int, str, str, int]]) -> set[tuple[Any, ...]]:
    """QEMU's ``(start, last, type, name, offset)`` lines as ``(start, last, name, offset)``."""
    return {(s, e, n, o) for s, e, _, n, o in ranges}


async def read_only_monitor(path: str) -> Monitor:
    mon = Monitor(command_timeout=10)
    await mon.connect(path, timeout=5)
    return mon


async def pci_slot(control: Monitor, qdev_id: str) -> int:
    buses = await control.execute("query-pci")
    assert isinstance(buses, list)
    for dev in buses[0]["devices"]:
        if dev.get("qdev_id") == qdev_id:
            return int(dev["slot"])
    raise AssertionError(f"{qdev_id} not on bus 0")


def config_address(slot: int, reg: int) -> int:
    """PCI configuration mechanism #1 address of bus 0, *slot*, function 0."""
    return 0x80000000 | slot << 11 | reg


# --------------------------------------------------------------------- hotplug


async def test_hotplug_dimm_and_pci_device(launch_vm: LaunchVM) -> None:
    vm = await launch_vm("-machine", "pc", "-m", "1G,slots=2,maxmem=4G", "-nic", "none")
    ctl = vm.control
    mon = await read_only_monitor(vm.socket)
    mirror = Mirror(mon, label="pc", interval=0.2)
    rec = Recorder(mirror)
    mirror.observers.append(rec)
    mirror.subscribe(rec)
    try:
        async with mirror:
            run = asyncio.create_task(mirror.run())
            await wait_for(lambda: mirror.frame is not None, what="the first reading")
            before = await ctl.info_mtree(flatview=True)

            # A pc-dimm: QEMU picks its address; its -f says where it went.
            mark = rec.mark()
            await ctl.execute(
                "object-add", {"qom-type": "memory-backend-ram", "id": "mem1", "size": 256 << 20}
            )
            await ctl.execute("device_add", {"driver": "pc-dimm", "id": "dimm1", "memdev": "mem1"})
            mirror.kick()  # device_add raises no QMP event
            plugged = await ctl.info_mtree(flatview=True)
            dimm = {r for r in qemu_ranges(plugged, "memory") if r[3] == "mem1"}
            assert len(dimm) == 1 and dimm == qemu_ranges(plugged, "memory") - qemu_ranges(
                before, "memory"
            )
            await wait_for(
                lambda: rec.since(mark, "add") == as_calls(dimm), what="region_add of the DIMM"
            )
            assert rec.since(mark, "del") == set()
            ((start, last, _, _, _),) = dimm
            assert last - start + 1 == 256 << 20 and start >= 1 << 32

            # An e1000: a new bus-master address space, but no BAR mapped yet.
            mark = rec.mark()
            await ctl.execute("device_add", {"driver": "e1000", "id": "nic1"})
            await wait_for(
                lambda: any(k[0] == "e1000" for k, _ in mirror.address_spaces()),
                what="the e1000 address space",
            )
            assert rec.since(mark, "add") == set()  # nothing new in "memory"
            assert not any("e1000" in c[4] for c in rec.calls[mark:] if c[0] == "add")

            # The guest would program BAR0 and enable memory decoding; so do we, through
            # port I/O. QEMU raises no event for it: the poll must find it.
            slot = await pci_slot(ctl, "nic1")
            mark = rec.mark()
            await ctl.hmp(f"o /w 0xcf8 {config_address(slot, 0x10):#x}")
            await ctl.hmp("o /w 0xcfc 0xfeb00000")
            await ctl.hmp(f"o /w 0xcf8 {config_address(slot, 0x04):#x}")
            await ctl.hmp("o /h 0xcfc 0x0002")
            mapped = await ctl.info_mtree(flatview=True)
            bar = {r for r in qemu_ranges(mapped, "memory") if r[3] == "e1000-mmio"}
            assert {(s, e) for s, e, *_ in bar} == {(0xFEB00000, 0xFEB1FFFF)}
            await wait_for(
                lambda: as_calls(bar) <= rec.since(mark, "add"), what="region_add of the e1000 BAR"
            )
            bar_frame = rec.frames[-1]
            assert bar_frame.trigger.kind == "poll"

            # device_del, and the guest's ACPI eject (what _EJ0 does). QEMU 7.2 unmaps the
            # device at once but, its BAR having been mapped, never finalizes it: no
            # DEVICE_DELETED comes (verified by hand). Only the poll can see this.
            mark = rec.mark()
            await ctl.execute("device_del", {"id": "nic1"})
            await ctl.hmp(f"o /w 0xae08 {1 << slot:#x}")
            await wait_for(
                lambda: as_calls(bar) <= rec.since(mark, "del"), what="region_del of the e1000 BAR"
            )
            assert rec.frames[-1].trigger.kind == "poll"
            assert not any(
                k[0] == "e1000" for k, a in mirror.address_spaces() if a.root is not None
            )

            # From here on only events may trigger a reading: no poll for a minute (the
            # one already scheduled with the short interval goes first).
            mirror.interval = 60.0
            readings = mirror.readings
            await wait_for(lambda: mirror.readings > readings, what="the last short poll")

            # An e1000 whose BAR was never mapped is finalized at once: DEVICE_DELETED.
            await ctl.execute("device_add", {"driver": "e1000", "id": "nic2"})
            mirror.kick()
            await wait_for(
                lambda: any(
                    k[0] == "e1000" and a.root is not None for k, a in mirror.address_spaces()
                ),
                what="the second e1000's address space",
            )
            slot2 = await pci_slot(ctl, "nic2")
            frames = len(rec.frames)
            await ctl.execute("device_del", {"id": "nic2"})
            await ctl.hmp(f"o /w 0xae08 {1 << slot2:#x}")
            await wait_for(
                lambda: (
                    not any(
                        k[0] == "e1000" and a.root is not None for k, a in mirror.address_spaces()
                    )
                ),
                what="the second e1000's address space to go",
            )
            gone = rec.frames[frames:]
            assert [f.trigger.label for f in gone] == ["event:DEVICE_DELETED"]
            assert gone[0].trigger.qemu_timestamp is not None
            assert any(t.key[0] == "e1000" and t.new is None for t in mirror.last_transitions)

            # The DIMM: device_del, then the guest's eject through the ACPI memory
            # hotplug registers (select slot 0, set the eject bit): DEVICE_DELETED.
            mark = rec.mark()
            await ctl.execute("device_del", {"id": "dimm1"})
            await ctl.hmp("o /w 0xa00 0")
            await ctl.hmp("o /b 0xa14 8")
            await wait_for(
                lambda: rec.since(mark, "del") == as_calls(dimm), what="region_del of the DIMM"
            )
            assert rec.frames[-1].trigger.label == "event:DEVICE_DELETED"
            assert qemu_ranges(await ctl.info_mtree(flatview=True), "memory") == qemu_ranges(
                before, "memory"
            )
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
    finally:
        await mon.close()
    assert rec.frames and all(f.ok for f in rec.frames), [
        (f.number, f.result.comparison.result) for f in rec.frames
    ]
    assert mirror.mismatches == 0 and not rec.errors
    assert rec.ends == ["interrupted"]


# ----------------------------------------------------- guest-side, no events


async def test_pam_change_found_by_polling(launch_vm: LaunchVM) -> None:
    vm = await launch_vm("-machine", "pc", "-nic", "none")
    ctl = vm.control
    mon = await read_only_monitor(vm.socket)
    mirror = Mirror(mon, label="pc", interval=0.2)
    rec = Recorder(mirror)
    mirror.observers.append(rec)
    keyed = Recorder(mirror)
    mirror.subscribe(rec)
    try:
        async with mirror:
            run = asyncio.create_task(mirror.run())
            await wait_for(lambda: mirror.frame is not None, what="the first reading")
            before = await ctl.info_mtree(flatview=True)
            mirror.subscribe(keyed, MEMORY)  # late: replayed as region_add of "memory"
            assert keyed.calls[0] == ("begin",) and keyed.calls[-1] == ("commit",)
            assert keyed.since(0, "add") == as_calls(qemu_ranges(before, "memory"))
            mark, kmark = rec.mark(), keyed.mark()
            # i440FX PAM0 (config 0x59 of 00:00.0): 0xf0000-0xfffff read/write RAM.
            await ctl.hmp("o /w 0xcf8 0x80000058")
            await ctl.hmp("o /b 0xcfd 0x30")
            after = await ctl.info_mtree(flatview=True)
            gone = as_calls(qemu_ranges(before, "memory") - qemu_ranges(after, "memory"))
            new = as_calls(qemu_ranges(after, "memory") - qemu_ranges(before, "memory"))
            assert gone and new
            assert any(n == "pc.ram" and s <= 0xF0000 <= e for s, e, n, _ in new)
            await wait_for(lambda: rec.since(mark, "add") == new, what="the PAM update")
            assert rec.since(mark, "del") == gone
            frame = rec.frames[-1]
            assert frame.trigger.kind == "poll" and frame.ok
            # QEMU's order: begin, all deletions, then nops and additions, commit.
            calls = rec.calls[mark:]
            kinds = [c[0] for c in calls if len(c) > 1 and c[1] == MEMORY]
            assert kinds.index("add") > max(i for i, k in enumerate(kinds) if k == "del")
            assert calls[0] == ("begin",) and calls[-1] == ("commit",)
            # The keyed subscriber heard exactly the "memory" part.
            assert keyed.since(kmark, "add") == new and keyed.since(kmark, "del") == gone
            assert {c[1] for c in keyed.calls[kmark:] if len(c) > 1} == {MEMORY}
            # Every section carries the mirror's one stable object for "memory", whose
            # root is the newest reading's.
            stable = mirror.address_space(MEMORY)
            assert keyed.spaces == {id(stable)}
            newest = {a.name: a for a in frame.machine.address_spaces}["memory"]
            assert stable is not newest and stable.root is newest.root
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
    finally:
        await mon.close()
    assert not rec.errors and mirror.mismatches == 0


# ----------------------------------------------------------------------- faults


async def test_stalled_monitor_is_reported_and_retried(launch_vm: LaunchVM) -> None:
    vm = await launch_vm("-machine", "pc", "-nic", "none")
    mon = await read_only_monitor(vm.socket)
    mirror = Mirror(
        mon, label="pc", interval=0.2, read_timeout=0.5, max_failures=20, backoff_max=0.8
    )
    rec = Recorder(mirror)
    mirror.observers.append(rec)
    try:
        async with mirror:
            run = asyncio.create_task(mirror.run())
            await wait_for(lambda: mirror.readings >= 1, what="the first reading")
            seen = len(rec.errors)
            os.kill(vm.pid, signal.SIGSTOP)
            try:
                await wait_for(lambda: len(rec.errors) >= seen + 2, what="two timeouts")
            finally:
                os.kill(vm.pid, signal.SIGCONT)
            first, second = rec.errors[seen : seen + 2]
            assert first.kind == second.kind == "timeout"
            assert not first.fatal and first.retry_in is not None
            assert second.retry_in is not None and second.retry_in > first.retry_in
            assert "stalled" in first.message
            readings = mirror.readings
            await wait_for(lambda: mirror.readings > readings, what="recovery after SIGCONT")
            assert not run.done()
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
    finally:
        await mon.close()


async def test_qemu_going_away_ends_the_mirror(launch_vm: LaunchVM) -> None:
    vm = await launch_vm("-machine", "pc", "-nic", "none")
    mon = await read_only_monitor(vm.socket)
    # A long poll interval: the loss must be noticed without waiting for a poll.
    mirror = Mirror(mon, label="pc", interval=60.0)
    rec = Recorder(mirror)
    mirror.observers.append(rec)
    try:
        run = asyncio.create_task(mirror.run())
        await wait_for(lambda: mirror.readings >= 1, what="the first reading")
        loop = asyncio.get_running_loop()
        started = loop.time()
        os.kill(vm.pid, signal.SIGKILL)
        with pytest.raises(QmirrorError, match="QEMU went away"):
            async with asyncio.timeout(10):
                await run
        assert loop.time() - started < 5
    finally:
        await mon.close(expect_eof=True)
    assert [e.kind for e in rec.errors] == ["gone"] and rec.errors[0].fatal
    assert rec.ends == ["gone"]


async def test_event_feed_stays_bounded(launch_vm: LaunchVM) -> None:
    vm = await launch_vm("-machine", "pc", "-nic", "none")
    mon = await read_only_monitor(vm.socket)
    try:
        with mon.events({"STOP", "RESUME"}, backlog=8) as feed:
            for _ in range(30):
                await vm.control.execute("cont")
                await vm.control.execute("stop")
            await mon.execute("query-status")  # events before it have arrived
            pending = feed.clear()
        assert len(pending) == 8 and feed.dropped == 60 - 8
        assert [e.name for e in pending[-2:]] == ["RESUME", "STOP"]
        assert feed.history == ()
        # qemu.qmp's own all-events listener keeps nothing either.
        assert mon._client is not None and len(mon._client.events.history) == 0
    finally:
        await mon.close()


# ------------------------------------------------------------------ watch CLI


_HEX = re.compile(r"\A0x[0-9a-f]{16,17}\Z")
_COMMON = {"seq", "time", "event", "reading", "trigger", "qemu_timestamp"}


def check_record(rec: dict[str, Any]) -> None:
    """The documented JSON Lines schema (README, qmirror/mirror.py)."""
    assert rec.keys() >= _COMMON, rec
    assert re.match(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00\Z", rec["time"])
    event = rec["event"]
    if event in ("region_add", "region_del", "region_nop"):
        for key in ("start", "size", "end", "offset"):
            assert _HEX.match(rec[key]), (key, rec)
        assert int(rec["end"], 16) == int(rec["start"], 16) + int(rec["size"], 16) - 1
        assert len(rec["address_space"]) == 2 and len(rec["address_space_key"]) == 4
        assert isinstance(rec["readonly"], bool) and isinstance(rec["region"], str)
    elif event == "validation":
        assert rec["result"] in ("match", "mismatch") and rec["tries"] >= 1
    elif event == "error":
        assert rec["kind"] in ("timeout", "gone", "failed") and rec["message"]
    elif event == "end":
        assert rec["reason"] in ("count", "duration", "gone", "failed", "interrupted")
    else:
        assert event in ("start", "begin", "commit", "log_start", "log_stop"), rec
    if rec["trigger"] is not None and rec["trigger"].startswith("event:"):
        ts = rec["qemu_timestamp"]
        assert isinstance(ts["seconds"], int) and isinstance(ts["microseconds"], int)


async def test_watch_jsonl_until_qemu_goes_away(launch_vm: LaunchVM) -> None:
    vm = await launch_vm("-machine", "pc", "-nic", "none")
    async with QmirrorProcess(
        "watch", f"unix:{vm.socket}", "--format", "jsonl", "--interval", "0.2"
    ) as watch:
        await watch.until(
            lambda r: r["event"] == "commit" and r["reading"] == 1, "the first reading"
        )
        # PAM: the BIOS area 0xf0000 now reads from RAM (a guest-side change, no event).
        await vm.control.hmp("o /w 0xcf8 0x80000058")
        await vm.control.hmp("o /b 0xcfd 0x30")
        await watch.until(
            lambda r: (
                r["event"] == "region_add"
                and r["reading"] != 1
                and r["region"] == "pc.ram"
                and r["start"] == "0x00000000000f0000"
            ),
            "the PAM change",
        )
        os.kill(vm.pid, signal.SIGKILL)
        fin = await watch.finish()
    assert fin.code == 2, fin.err
    assert "QEMU went away" in fin.err
    records = watch.records
    for r in records:
        check_record(r)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    events = [r["event"] for r in records]
    assert events[0] == "start" and events[1] == "validation" and events[2] == "begin"
    assert events[-2:] == ["error", "end"]
    assert records[-2]["kind"] == "gone" and records[-2]["fatal"] is True
    assert records[-1]["reason"] == "gone"
    pam = [
        r
        for r in records
        if r["event"] == "region_add"
        and r["reading"] != 1
        and r["address_space"] == ["memory", "system"]
    ]
    assert any(r["region"] == "pc.ram" and r["start"] == "0x00000000000f0000" for r in pam)
    assert {r["trigger"] for r in pam} == {"poll"}
    assert all(r["result"] == "match" for r in records if r["event"] == "validation")


async def test_watch_launch_count(qemu_binary: str) -> None:
    run = await run_qmirror(
        "watch",
        "--count",
        "2",
        "--interval",
        "0.3",
        "--format",
        "jsonl",
        "--no-nop",
        "--launch",
        "--",
        qemu_binary,
        "-machine",
        "pc",
        "-nic",
        "none",
        timeout=60,
    )
    assert run.code == 0, run.err
    records = [json.loads(line) for line in run.out.splitlines()]
    for r in records:
        check_record(r)
    assert not any(r["event"] == "region_nop" for r in records)
    assert records[-1]["event"] == "end" and records[-1]["reason"] == "count"
    assert records[0]["metadata"]["command_line"][0] == qemu_binary
