"""Faults on the live side, with real sockets and (where the fault allows) real QEMU.

A monitor that breaks the protocol, a map that changes under a reading, and failures
repeated in one process: each must end in a clear error (or a retry that succeeds)
within the timeout, without a traceback, a leaked file descriptor or a stray process.
Faults covered elsewhere: QEMU SIGKILLed mid-read, a monitor that never greets and
garbage HMP replies (``test_live.py``), a SIGSTOPped QEMU (``test_qmp.py``,
``test_mirror.py``), disk full while saving a snapshot (``test_snapshot.py``).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from livehelpers import LaunchVM, LiveVM, run_main, run_qmirror, wait_for
from qmp_peers import BrokenQmp, RecordingProxy

from qmirror.errors import QmirrorError
from qmirror.live.livecheck import check_targets
from qmirror.live.qmp import Monitor
from qmirror.live.snapshot import take_snapshot
from qmirror.live.targets import Target


pytestmark = pytest.mark.qemu


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# -- a monitor that breaks the protocol ------------------------------------------------


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("invalid-json", "QMP protocol error: Failed to deserialize QMP message. (Expecting value"),
        ("endless", "a QMP reply longer than 10485760 bytes during info"),
    ],
)
async def test_broken_protocol_is_trouble_not_a_hang(
    short_tmp: Path, how: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with BrokenQmp(short_tmp / "broken.sock", how) as peer:
        assert isinstance(peer, BrokenQmp)
        run = await run_main(capsys, "check", f"unix:{peer.path}", "--timeout", "10")
    assert run.code == 2, run
    assert "Traceback" not in run.err
    assert expected in run.err, run.err
    assert run.seconds < 15
    if how == "endless":
        # qmirror gave up at its reply limit (10 MiB), not after reading everything.
        assert peer.endless_bytes < 64 << 20


async def test_broken_protocol_leaks_no_descriptor(short_tmp: Path) -> None:
    async with BrokenQmp(short_tmp / "broken.sock", "invalid-json") as peer:
        assert isinstance(peer, BrokenQmp)
        target = Target.unix(peer.path)
        (warm,) = await check_targets([target], timeout=10)  # let lazy imports settle
        assert warm.error is not None
        before = open_fds()
        for _ in range(5):
            (o,) = await check_targets([target], timeout=10)
            assert o.error is not None and o.result is None
        # The peer (in this process too) closes its ends once it sees ours close.
        await wait_for(lambda: open_fds() == before, what="descriptors to be closed", timeout=5)


# -- the map changing between the tree and the flat reading ----------------------------


class PamToggler:
    """Flips i440FX PAM0 (0xf0000-0xfffff: RAM read/write, or back to ROM) through the
    VM's control monitor each time qmirror asks for ``info mtree -f`` — after its tree
    reading, before its flat one — up to *times* times."""

    def __init__(self, vm: LiveVM, times: int) -> None:
        self.control = vm.control
        self.left = times
        self.values = itertools.cycle((0x30, 0x00))
        self.flips = 0

    async def __call__(self, msg: dict[str, Any]) -> None:
        line = str((msg.get("arguments") or {}).get("command-line", ""))
        if self.left and line.startswith("info mtree -f"):
            self.left -= 1
            self.flips += 1
            await self.control.hmp("o /w 0xcf8 0x80000058")  # /w: 32 bits in HMP
            await self.control.hmp(f"o /b 0xcfd {next(self.values):#x}")


async def test_a_change_between_readings_is_read_again(
    launch_vm: LaunchVM, short_tmp: Path
) -> None:
    vm = await launch_vm("-machine", "pc", "-nic", "none")
    before = await vm.control.info_mtree(flatview=True)
    toggle = PamToggler(vm, times=1)
    async with RecordingProxy(short_tmp / "proxy.sock", vm.socket, before_forward=toggle) as proxy:
        (o,) = await check_targets([Target.unix(proxy.path)], timeout=20)
    assert toggle.flips == 1
    assert o.error is None, o.error
    assert o.snapshot is not None and o.snapshot.tries == 2
    assert o.result is not None and o.result.ok
    # What was checked is the map after the change, which QEMU confirms.
    after = await vm.control.info_mtree(flatview=True, owners=True)
    assert after != before and o.snapshot.flat == after


async def test_a_map_that_never_holds_still_is_a_clear_error(
    launch_vm: LaunchVM, short_tmp: Path
) -> None:
    vm = await launch_vm("-machine", "pc", "-nic", "none")
    toggle = PamToggler(vm, times=1000)
    async with RecordingProxy(short_tmp / "proxy.sock", vm.socket, before_forward=toggle) as proxy:
        monitor = Monitor(command_timeout=10)
        await monitor.connect(proxy.path, timeout=10)
        try:
            with pytest.raises(QmirrorError, match="changed during each of 3 readings"):
                await take_snapshot(monitor, max_tries=3)
        finally:
            await monitor.close()
        assert toggle.flips == 3
        run = await run_qmirror("check", f"unix:{proxy.path}", "--timeout", "20")
    assert run.code == 2
    assert "the memory map changed during each of" in run.err and "--pause" in run.err
    assert "Traceback" not in run.err
