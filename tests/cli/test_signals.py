"""Whatever signal ends ``qmirror check --launch``, its QEMU does not outlive it (issue 17).

Real QEMU, run by the real command (``python -m qmirror``). Each test gives its QEMU a
unique ``-name`` so it can find that process (and only that one), waits until the QEMU
is there, signals qmirror, and then waits for the QEMU to be gone. Teardown kills any
survivor by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from livehelpers import REPO, QmirrorProcess, pids_with, qmirror_env, wait_for


def _state(pid: int) -> str | None:
    """The process state letter, or ``None`` once it is reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _dead(pid: int) -> bool:
    # Orphans are reparented to pid 1, which may not reap them here: a zombie is dead.
    return _state(pid) in (None, "Z", "X")


def _is_qemu(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return os.path.basename(argv0).startswith(b"qemu-system")


@dataclass(slots=True)
class Running:
    qmirror: QmirrorProcess
    marker: str

    @property
    def proc(self) -> asyncio.subprocess.Process:
        return self.qmirror.proc

    def qemu_pids(self) -> list[int]:
        """Live processes with the marker that are QEMU by now: between fork and exec
        the child is a copy of qmirror, marker and all, and while it execs its command
        line cannot be read."""
        return [
            p for p in pids_with(self.marker) if p != self.proc.pid and not _dead(p) and _is_qemu(p)
        ]

    async def wait_for_qemu(self) -> int:
        found: list[int] = []

        def started() -> bool:
            found[:] = self.qemu_pids()
            return bool(found)

        await wait_for(started, timeout=60, what="QEMU to start")
        (pid,) = found
        return pid

    async def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        fin = await self.qmirror.finish(timeout)
        return fin.code, fin.out, fin.err


def _default_stop_signals() -> None:
    # Whoever started the tests may have left SIGHUP or SIGTERM ignored (`nohup`), and an
    # ignored signal stays ignored across exec: qmirror then rightly leaves it so.
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


def _ignore_sigint() -> None:
    _default_stop_signals()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.asynccontextmanager
async def qmirror_launch(
    qemu_binary: str, *command: str, sigint_ignored: bool = False
) -> AsyncIterator[Running]:
    """``qmirror COMMAND --launch -- QEMU -name MARKER`` (default ``check --boot 600``):
    busy until signalled.

    :param sigint_ignored: start it with SIGINT ignored, as a shell starts a background
        job of a script (asyncio then installs no SIGINT handler of its own).
    """
    marker = f"qmirror-signal-{uuid.uuid4().hex[:12]}"
    command = command or ("check", "--boot", "600", "--timeout", "60")
    async with QmirrorProcess(
        *command,
        "--launch",
        "--",
        qemu_binary,
        "-machine",
        "pc",
        "-nic",
        "none",
        "-name",
        marker,
        jsonl=False,
        preexec_fn=_ignore_sigint if sigint_ignored else _default_stop_signals,
        also_kill=lambda: pids_with(marker),
    ) as qmirror:
        yield Running(qmirror, marker)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
async def test_stop_signal_shuts_qemu_down(qemu_binary: str, signum: int, code: int) -> None:
    async with qmirror_launch(qemu_binary) as run:
        qemu = await run.wait_for_qemu()
        os.kill(run.proc.pid, signum)
        got, out, err = await run.finish()
        assert got == code, err
        assert "Traceback" not in err and "Traceback" not in out
        # qmirror reaped its QEMU before exiting: not even a zombie is left.
        assert _state(qemu) is None
        assert run.qemu_pids() == []


async def test_sigterm_to_a_background_job(qemu_binary: str) -> None:
    """SIGINT ignored (``qmirror ... &`` in a script), then SIGTERM: the same clean end."""
    async with qmirror_launch(qemu_binary, sigint_ignored=True) as run:
        qemu = await run.wait_for_qemu()
        os.kill(run.proc.pid, signal.SIGTERM)
        got, _, err = await run.finish()
        assert got == 143, err
        assert "Traceback" not in err
        assert _state(qemu) is None


@pytest.mark.parametrize(
    "command", [("snapshot", "--out", "never", "--boot", "600"), ("watch", "--interval", "0.5")]
)
async def test_sigterm_during_snapshot_and_watch(
    qemu_binary: str, short_tmp: Path, command: tuple[str, ...]
) -> None:
    if command[0] == "snapshot":
        command = ("snapshot", "--out", str(short_tmp / "snap"), *command[3:])
    async with qmirror_launch(qemu_binary, *command) as run:
        qemu = await run.wait_for_qemu()
        os.kill(run.proc.pid, signal.SIGTERM)
        got, _, err = await run.finish()
        assert got == 143, err
        assert "Traceback" not in err
        assert _state(qemu) is None
    assert os.listdir(short_tmp) == []  # no snapshot, not even half of one


async def test_sigkill_takes_qemu_along(qemu_binary: str) -> None:
    """qmirror gets no chance to clean up: the kernel's parent-death signal does it."""
    async with qmirror_launch(qemu_binary) as run:
        qemu = await run.wait_for_qemu()
        # QEMU's output goes to a file with no name: nothing to leave behind on disk.
        await wait_for(lambda: os.path.exists(f"/proc/{qemu}/fd/1"), what="QEMU's stdout")
        assert os.readlink(f"/proc/{qemu}/fd/1").endswith(" (deleted)")
        os.kill(run.proc.pid, signal.SIGKILL)
        assert (await run.finish())[0] == -signal.SIGKILL
        await wait_for(lambda: _dead(qemu), timeout=10, what=f"QEMU pid {qemu} to die")


# Interrupts itself the moment `qmirror.cli.check` is about to be imported, i.e. in the
# middle of the command line's (slow) imports, then runs the entry point as the
# `qmirror` script does.
_INTERRUPT_DURING_IMPORT = """
import importlib.abc, os, signal, sys

class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "qmirror.cli.check":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
from qmirror.__main__ import run
sys.exit(run())
"""


async def test_ctrl_c_while_importing_is_quiet() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _INTERRUPT_DURING_IMPORT,
        "--version",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=qmirror_env(),
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 130, err.decode()
    assert out == b"" and err == b""  # interrupted before --version could answer
