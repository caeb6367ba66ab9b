"""Tests for qmirror.live.launcher: start, fail fast, and never leave a QEMU behind."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from qmirror.errors import LaunchError, MonitorError
from qmirror.live.launcher import QemuInstance


pytestmark = pytest.mark.qemu


def assert_gone(pid: int | None) -> None:
    """The process is reaped: not running and not a zombie."""
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_launch_paused_pc(qemu_binary: str) -> None:
    async with QemuInstance(["-machine", "pc"], binary=qemu_binary) as vm:
        pid = vm.pid
        assert vm.command_line[0] == qemu_binary and "-S" in vm.command_line
        info = await vm.monitor.describe()
        assert info["machine"].startswith("pc-i440fx-")
        assert info["status"] == "prelaunch"
    assert vm.exitcode == 0
    assert_gone(pid)


async def test_bad_command_line_fails_fast(qemu_binary: str) -> None:
    start = time.monotonic()
    with pytest.raises(LaunchError) as info:
        async with QemuInstance(["-device", "no-such-device"], binary=qemu_binary):
            pytest.fail("QEMU should not have come up")
    assert time.monotonic() - start < 5
    err = info.value
    assert err.exitcode == 1
    assert "'no-such-device' is not a valid device model name" in err.log
    assert "no-such-device" in str(err) and "exit code 1" in str(err)
    assert err.command[0] == qemu_binary and "no-such-device" in err.command


async def test_missing_binary() -> None:
    with pytest.raises(LaunchError, match="cannot run"):
        async with QemuInstance(binary="/nonexistent/qemu-system-x86_64"):
            pass


async def test_cleanup_when_body_raises(qemu_binary: str) -> None:
    pid = None
    with pytest.raises(RuntimeError, match="boom"):
        async with QemuInstance(binary=qemu_binary) as vm:
            pid = vm.pid
            raise RuntimeError("boom")
    assert_gone(pid)


async def test_cleanup_when_cancelled(qemu_binary: str) -> None:
    started = asyncio.Event()
    pids: list[int] = []

    async def body() -> None:
        async with QemuInstance(binary=qemu_binary) as vm:
            assert vm.pid is not None
            pids.append(vm.pid)
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(body())
    async with asyncio.timeout(10):
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(60):
            await task
    assert_gone(pids[0])


async def test_sigkill_mid_session_gives_monitor_error(qemu_binary: str) -> None:
    async with QemuInstance(binary=qemu_binary) as vm:
        assert vm.pid is not None
        os.kill(vm.pid, signal.SIGKILL)
        with pytest.raises(MonitorError, match="QEMU went away"):
            async with asyncio.timeout(10):  # a hang would be the bug
                await vm.monitor.hmp("info status")
        pid = vm.pid
    assert vm.exitcode == -signal.SIGKILL
    assert_gone(pid)


async def test_log_text_survives_shutdown(qemu_binary: str) -> None:
    async with QemuInstance(binary=qemu_binary) as vm:
        await vm.monitor.hmp("info status")
    assert isinstance(vm.log_text(), str)
    with pytest.raises(MonitorError):
        _ = vm.monitor


@pytest.mark.kvm
async def test_kvm_accelerator(qemu_binary: str, kvm: None) -> None:
    async with QemuInstance(["-accel", "kvm"], binary=qemu_binary) as vm:
        info = await vm.monitor.describe()
        assert info["accelerator"] == "kvm"
