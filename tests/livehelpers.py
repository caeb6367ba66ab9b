"""Helpers for tests that run the ``qmirror`` command against real QEMUs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from qmirror.live.launcher import QemuInstance
from qmirror.live.qmp import Monitor


REPO = Path(__file__).resolve().parent.parent
REQUIRE_LIVE = "QMIRROR_REQUIRE_LIVE"


def live_required() -> bool:
    """CI sets ``QMIRROR_REQUIRE_LIVE=1``: there, a live test that cannot run is a failure."""
    return os.environ.get(REQUIRE_LIVE, "") not in ("", "0")


def skip_live(reason: str) -> NoReturn:
    """Skip a live test because something it needs (a QEMU binary, Chromium, libvirt...)
    is missing; under ``QMIRROR_REQUIRE_LIVE=1`` fail instead, so that CI cannot go green
    by skipping. An unusable /dev/kvm is the one exception: KVM tests ``pytest.skip``."""
    if live_required():
        pytest.fail(f"{reason} ({REQUIRE_LIVE}=1: a live test may not skip)", pytrace=False)
    pytest.skip(reason)


def assert_gone(pid: int | None) -> None:
    """The process is reaped: neither running nor a zombie."""
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@dataclass(slots=True)
class LiveVM:
    """A QEMU launched for a test, with a plain QMP socket for qmirror to attach to.

    :param instance: the launcher's handle; its own monitor allows control (for the
        test to drive the VM: device_add, port I/O, ...).
    :param socket: a second QMP monitor on a UNIX socket, for the code under test.
    """

    instance: QemuInstance
    socket: str

    @property
    def pid(self) -> int:
        assert self.instance.pid is not None
        return self.instance.pid

    @property
    def control(self) -> Monitor:
        return self.instance.monitor


LaunchVM = Callable[..., Awaitable[LiveVM]]


@dataclass(slots=True)
class Run:
    """A finished ``python -m qmirror`` run."""

    code: int
    out: str
    err: str
    seconds: float


def qmirror_env(unset: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment a ``python -m qmirror`` child gets: this one, minus *unset*, with
    the checkout first on ``PYTHONPATH`` (its code is imported wherever it runs)."""
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@dataclass(slots=True)
class Finished:
    """How a :class:`QmirrorProcess` ended: its status and what it wrote after the test
    stopped reading (standard output's JSON Lines also went to ``records``)."""

    code: int
    out: str
    err: str


class QmirrorProcess:
    """``python -m qmirror --color never ARGS`` running while the test talks to it.

    The test waits on what qmirror writes (a JSON Lines record, a line on standard
    error), never on the clock. Leaving the ``async with`` kills the process by pid, and
    every pid *also_kill* names then (the QEMU it launched), whatever happened.

    :param jsonl: standard output is JSON Lines: :meth:`until` reads records and
        :meth:`finish` parses the rest into ``records`` too.
    :param stdout: ``False`` sends standard output to /dev/null.
    :param preexec_fn: run in the child before qmirror starts (signal dispositions).
    """

    def __init__(
        self,
        *args: str,
        jsonl: bool = True,
        stdout: bool = True,
        preexec_fn: Callable[[], None] | None = None,
        also_kill: Callable[[], list[int]] = list,
    ) -> None:
        self.args = args
        self.jsonl = jsonl
        self.stdout = stdout
        self.preexec_fn = preexec_fn
        self.also_kill = also_kill
        self.records: list[dict[str, Any]] = []
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def proc(self) -> asyncio.subprocess.Process:
        assert self._proc is not None, "not started"
        return self._proc

    async def __aenter__(self) -> QmirrorProcess:
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "qmirror",
            "--color",
            "never",
            *self.args,
            stdin=devnull,
            stdout=pipe if self.stdout else devnull,
            stderr=pipe,
            cwd=REPO,
            env=qmirror_env(),
            preexec_fn=self.preexec_fn,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self.proc
        for pid in [proc.pid, *self.also_kill()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()

    async def until(
        self,
        wanted: str | Callable[[dict[str, Any]], bool],
        what: str | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Read records until one is the event *wanted* names (or satisfies it); return it.

        :raise AssertionError: standard output ended first.
        :raise TimeoutError: nothing matching within *timeout* seconds.
        """
        stdout = self.proc.stdout
        assert stdout is not None and self.jsonl
        if isinstance(wanted, str):
            event = wanted
            what = what or f"a {event!r} record"

            def wanted(record: dict[str, Any]) -> bool:
                return bool(record["event"] == event)

        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await stdout.readline()
                    if not line:
                        raise AssertionError(f"qmirror's output ended before {what}")
                    record: dict[str, Any] = json.loads(line)
                    self.records.append(record)
                    if wanted(record):
                        return record
        except TimeoutError:
            raise TimeoutError(f"no record of {what} within {timeout:g}s") from None

    async def stderr_line(self, timeout: float = 30.0) -> str:
        """The next line qmirror writes to standard error ('' at its end)."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            return (await self.proc.stderr.readline()).decode()

    async def finish(self, timeout: float = 60.0) -> Finished:
        """Wait for qmirror to end by itself; what it wrote meanwhile is returned (and, with
        *jsonl*, its records appended to ``records``)."""
        async with asyncio.timeout(timeout):
            out, err = await self.proc.communicate()
        text = (out or b"").decode()
        if self.jsonl:
            self.records += [json.loads(line) for line in text.splitlines()]
        assert self.proc.returncode is not None
        return Finished(self.proc.returncode, text, err.decode())


async def run_qmirror(
    *args: str, timeout: float = 120.0, cwd: Path = REPO, unset: tuple[str, ...] = ()
) -> Run:
    """Run ``python -m qmirror --color never ARGS`` from the checkout and wait for it.

    :param cwd: where to run it (the checkout's code is imported wherever it runs).
    :param unset: environment variables to leave out.
    :raise TimeoutError: it did not finish in time (it is killed first).
    """
    env = qmirror_env(unset)
    env.pop("NO_COLOR", None)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qmirror",
        "--color",
        "never",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode(), time.monotonic() - started)


async def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """Run ``qmirror --color never ARGS`` in this process (on a thread of its own, with its
    own event loop) and time it there: the time excludes interpreter start-up and
    imports, which a loaded machine can stretch to seconds.

    The test's own event loop keeps running meanwhile (fake peers and proxies on it
    keep serving)."""
    from qmirror.cli import main  # noqa: PLC0415 - the tests' helpers load the CLI lazily

    capsys.readouterr()
    started = time.monotonic()
    code = await asyncio.to_thread(main, ["--color", "never", *args])
    seconds = time.monotonic() - started
    out, err = capsys.readouterr()
    return Run(code, out, err, seconds)


def pids_with(marker: str) -> list[int]:
    """Processes whose command line contains *marker* (e.g. a unique ``-name``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and int(entry.name) != os.getpid():
            # A zombie still shows its cmdline only while unreaped; count it too.
            found.append(int(entry.name))
    return found


async def wait_for(
    predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
) -> None:
    """Poll *predicate* every 20 ms until it holds.

    :raise TimeoutError: with *what* in the message.
    """
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - state of another task, no event to wait on
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}") from None


_FLAT_RANGE = re.compile(
    r"^  ([0-9a-f]{16})-([0-9a-f]{16}) \(prio (-?\d+), ([a-z/-]+)\): (.*?)"
    r"(?: @([0-9a-f]{16}))?(?: KVM)*\r?$"
)


def qemu_ranges(flat_text: str, address_space: str) -> set[tuple[int, int, str, str, int]]:
    """The ranges QEMU's own ``info mtree -f`` (without ``-o``) prints for an address
    space: ``(start, last, type, name, offset)``. Read with a regular expression of its
    own, so that a bug in qmirror's parser cannot hide in the expectation."""
    blocks = flat_text.replace("\r\n", "\n").split("\nFlatView #")
    for block in blocks:
        lines = block.split("\n")
        names = [ln for ln in lines if ln.startswith(" AS ")]
        if not any(re.match(rf' AS "{re.escape(address_space)}"', ln) for ln in names):
            continue
        out = set()
        for ln in lines:
            m = _FLAT_RANGE.match(ln)
            if m:
                out.add(
                    (
                        int(m.group(1), 16),
                        int(m.group(2), 16),
                        m.group(4),
                        m.group(5),
                        int(m.group(6) or "0", 16),
                    )
                )
        return out
    raise AssertionError(f"no FlatView of {address_space!r} in QEMU's -f")
