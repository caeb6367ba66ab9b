"""Start a private QEMU, talk QMP to it, and always take it down again.

:class:`QemuInstance` is an async context manager::

    async with QemuInstance(["-machine", "q35"]) as vm:
        text = await vm.monitor.info_mtree(flatview=True)

Design (after the model of QEMU's own python/qemu/machine, written for asyncio):

* QMP runs over a socketpair handed to QEMU as an inherited fd: no socket file, no
  polling for it to appear, no ``sun_path`` length limit;
* QEMU's stdout and stderr go to an anonymous temporary file (unlinked from the start:
  nothing is left on disk whatever ends us); stdin is ``/dev/null``; QEMU gets its own
  process group, so a terminal's Ctrl-C reaches only Python, which then shuts QEMU down
  in order;
* on Linux QEMU is also told to die with us (``PR_SET_PDEATHSIG``): if Python is killed
  outright (SIGKILL, a crash) the kernel sends QEMU SIGKILL. The signal follows the
  *thread* that forked QEMU, so a QemuInstance must live on a thread that outlives it
  (``asyncio.run`` in the main thread, or the pytest plugin's loop thread, which stops
  only after its QEMU has been shut down);
* connecting races against QEMU exiting, so a bad command line fails in milliseconds
  with QEMU's own message;
* shutdown is ``quit`` over QMP, then SIGTERM, then SIGKILL, each with a deadline, and
  the process is always reaped; the cleanup cannot be cancelled half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import IO, Final, TypeVar

from qmirror.errors import LaunchError, MonitorError, QmirrorError
from qmirror.live.options import DEFAULT_BINARY
from qmirror.live.qmp import DEFAULT_COMMAND_TIMEOUT, Monitor


__all__ = [
    "DEFAULT_BINARY",
    "QemuInstance",
    "kvm_problem",
    "kvm_usable",
    "qemu_error_line",
]

_log = logging.getLogger(__name__)


_MONITOR_ID: Final = "qmirror-qmp"
# QEMU 11 deprecates ``-mon`` (a warning on every start) in favour of this object type;
# older versions do not have it, so each binary is asked once (``-object help``).
_QMP_OBJECT: Final = "monitor-qmp"
_PROBE_TIMEOUT: Final = 20.0
# Per binary path: whether ``-object monitor-qmp`` is available. A process asks once.
_qmp_object_support: dict[str, bool] = {}
# _IO(KVMIO, 0x00); the KVM API version has been 12 since Linux 2.6.22.
_KVM_GET_API_VERSION: Final = 0xAE00
_KVM_API_VERSION: Final = 12
# After the monitor fails, how long to wait for QEMU to exit by itself so that its
# exit code and last words can be reported.
_EXIT_GRACE: Final = 2.0

_T = TypeVar("_T")

# "qemu-system-x86_64: -mon ...: warning: ..." and "qemu-system-arm: warning: ...".
_WARNING: Final = re.compile(r"(^|: )warning: ")
_PROGRAM: Final = re.compile(r"^qemu-system-[\w.-]+: ")

# prctl(2) option: signal to get when the parent (thread) dies.
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when we die (Linux only).

    Everything is looked up before the fork: the child only calls a C function and
    compares two ints. If we died between fork and prctl, the child is already
    orphaned and the death signal will never come, so it leaves by itself.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(127)

    return hook


def kvm_problem(path: str = "/dev/kvm") -> str | None:
    """Say why KVM cannot be used here, or return ``None`` if it can.

    Opens the device read-write and asks for the KVM API version, which is what QEMU
    does first.

    :param path: the KVM device node.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open {path}: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
    except OSError as exc:
        return f"KVM_GET_API_VERSION on {path} failed: {exc.strerror}"
    finally:
        os.close(fd)
    if version != _KVM_API_VERSION:
        return f"{path} reports KVM API version {version}, expected {_KVM_API_VERSION}"
    return None


def kvm_usable(path: str = "/dev/kvm") -> bool:
    """Whether ``-accel kvm`` can work: *path* opens and speaks KVM API 12."""
    return kvm_problem(path) is None


def qemu_error_line(log: str) -> str | None:
    """QEMU's own error in its output *log*: the last line that is not a warning.

    QEMU prefixes its messages with the program name (``qemu-system-arm: ...``) and marks
    warnings with ``warning:`` after the option that caused them; a warning printed first
    (a deprecated option, say) is not why QEMU stopped.
    """
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if not _WARNING.search(ln)]
    prefixed = [ln for ln in errors if _PROGRAM.match(ln)]
    if prefixed:
        return prefixed[-1]
    return errors[-1] if errors else None


def _kill_quietly(pid: int) -> None:
    """Last-resort guard (garbage collection or interpreter exit): SIGKILL the pid."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


async def _uncancellable(work: Awaitable[_T]) -> _T:
    """Run *work* to the end even if we are cancelled meanwhile, then re-raise that.

    Used for spawning and for the kill-and-reap path: stopping half-way would leak a
    process. The work itself must be bounded (it is: every wait has a deadline).
    """
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            # Unlike awaiting the task, asyncio.wait() does not pass our cancellation on.
            await asyncio.wait((task,))
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # mark it retrieved; the cancellation wins
        raise cancelled
    return task.result()


async def _has_qmp_object(binary: str) -> bool:
    """Whether *binary* lists ``monitor-qmp`` in ``-object help`` (asked once per binary).

    Anything going wrong here (no such binary, a hang) answers ``False``: the launch that
    follows then uses ``-mon`` and reports the real failure itself.
    """
    key = shutil.which(binary) or binary
    known = _qmp_object_support.get(key)
    if known is not None:
        return known
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-object",
            "help",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=_die_with_parent_hook(),
        )
    except OSError:
        return False
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            out, _ = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return False
    finally:
        if proc.returncode is None:
            # Cancelled: the probe must not outlive us.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await _uncancellable(proc.wait())
    found = _QMP_OBJECT in out.decode("utf-8", errors="replace").split()
    _qmp_object_support[key] = found
    return found


class _StartupError(Exception):
    """Internal: launch failed; turned into :class:`LaunchError` once QEMU is reaped."""


class QemuInstance:
    """A QEMU process owned by qmirror, with a control-enabled :class:`Monitor`.

    :param args: extra QEMU arguments, appended after qmirror's own.
    :param binary: QEMU executable (name on ``PATH`` or a path).
    :param paused: pass ``-S`` so no guest code runs until ``cont``.
    :param connect_timeout: seconds for QEMU to come up and greet on QMP.
    :param command_timeout: default per-command timeout of :attr:`monitor`.
    :param shutdown_timeout: seconds QEMU gets to exit after ``quit``; SIGTERM and
        SIGKILL follow with deadlines of their own.
    :param debug: do not silence qemu.qmp's logging.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        binary: str = DEFAULT_BINARY,
        paused: bool = True,
        connect_timeout: float = 30.0,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        shutdown_timeout: float = 30.0,
        debug: bool = False,
    ) -> None:
        self.args = list(args)
        self.binary = binary
        self.paused = paused
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.shutdown_timeout = shutdown_timeout
        #: Seconds to wait after SIGTERM, then after SIGKILL.
        self.term_timeout = 5.0
        self.kill_timeout = 10.0
        self._debug = debug
        self._argv: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: Monitor | None = None
        self._log: IO[bytes] | None = None
        self._log_cache: str | None = None
        self._finalizer: weakref.finalize[[int], QemuInstance] | None = None
        self._signalled_by_us = False
        self._launched = False

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.exitcode}"
        return f"<QemuInstance pid={self.pid} {state} {' '.join(self._argv) or self.binary}>"

    async def __aenter__(self) -> QemuInstance:
        await self.launch()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _uncancellable(self.shutdown())

    # ------------------------------------------------------------ properties

    @property
    def pid(self) -> int | None:
        """QEMU's process id, once spawned (kept after it exits, for reporting)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def command_line(self) -> list[str]:
        """The exact argv QEMU was started with (empty before :meth:`launch`)."""
        return list(self._argv)

    @property
    def exitcode(self) -> int | None:
        """QEMU's exit status once reaped; negative for a signal, as in subprocess."""
        return self._proc.returncode if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether QEMU has been spawned and not yet reaped."""
        return self._proc is not None and self._proc.returncode is None

    @property
    def monitor(self) -> Monitor:
        """The QMP monitor (``allow_control=True``: this QEMU is ours)."""
        if self._monitor is None:
            raise MonitorError("QEMU has not been launched (or has been shut down)")
        return self._monitor

    def log_text(self) -> str:
        """QEMU's stdout and stderr so far (kept in memory once shut down)."""
        if self._log_cache is not None:
            return self._log_cache
        if self._log is None:
            return ""
        try:
            fd = self._log.fileno()
            # pread: QEMU shares this file's offset; reading must not move it.
            data = os.pread(fd, os.fstat(fd).st_size, 0)
        except (OSError, ValueError):
            return ""
        return data.decode("utf-8", errors="replace")

    # ---------------------------------------------------------------- launch

    def _build_argv(self, monitor_fd: int, *, qmp_object: bool) -> list[str]:
        if qmp_object:
            monitor = ["-object", f"{_QMP_OBJECT},id={_MONITOR_ID}-mon,chardev={_MONITOR_ID}"]
        else:
            monitor = ["-mon", f"chardev={_MONITOR_ID},mode=control"]
        argv = [
            self.binary,
            "-display",
            "none",
            "-chardev",
            f"socket,id={_MONITOR_ID},fd={monitor_fd}",
            *monitor,
        ]
        if self.paused:
            argv.append("-S")
        argv.extend(self.args)
        return argv

    async def launch(self) -> None:
        """Start QEMU and connect to its monitor.

        :raise LaunchError: QEMU could not be started, exited, or never greeted on QMP;
            carries the exit code, the command line and QEMU's output.
        """
        if self._launched:
            raise LaunchError("this QemuInstance was already launched", command=self._argv)
        self._launched = True
        qmp_object = await _has_qmp_object(self.binary)
        self._log = tempfile.TemporaryFile(prefix="qmirror-qemu-", suffix=".log")  # noqa: SIM115 - closed in _finish
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._argv = self._build_argv(theirs.fileno(), qmp_object=qmp_object)
            try:
                await _uncancellable(self._spawn(theirs.fileno()))
            finally:
                # QEMU has its own copy now; ours would hide QEMU's hang-up from us.
                theirs.close()
            await self._connect_or_fail(ours)
        except _StartupError as failure:
            ours.close()  # if the monitor has not closed it already
            await _uncancellable(self._stop(graceful=False))
            raise LaunchError(
                str(failure), command=self._argv, exitcode=self.exitcode, log=self.log_text()
            ) from failure.__cause__
        except BaseException:
            ours.close()
            await _uncancellable(self._stop(graceful=False))
            raise

    async def _spawn(self, monitor_fd: int) -> None:
        assert self._log is not None
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=(monitor_fd,),
                process_group=0,
                preexec_fn=_die_with_parent_hook(),
            )
        except OSError as exc:
            where = shutil.which(self.binary) or self.binary
            raise _StartupError(f"cannot run {where}: {exc.strerror or exc}") from exc
        self._finalizer = weakref.finalize(self, _kill_quietly, self._proc.pid)

    async def _connect_or_fail(self, sock: socket.socket) -> None:
        """Connect to the monitor while watching for QEMU to exit, whichever comes first."""
        proc = self._proc
        assert proc is not None
        monitor = Monitor(
            allow_control=True,
            command_timeout=self.command_timeout,
            debug=self._debug,
            name=f"qemu-{proc.pid}",
        )
        connecting = asyncio.create_task(monitor.connect(sock, timeout=self.connect_timeout))
        exiting = asyncio.create_task(proc.wait())
        try:
            # connect() has its own deadline; the extra second only guards against a bug.
            await asyncio.wait(
                (connecting, exiting),
                timeout=self.connect_timeout + 1.0,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in (connecting, exiting):
                if not task.done():
                    task.cancel()
                    await asyncio.wait((task,))
        if connecting.done() and not connecting.cancelled() and connecting.exception() is None:
            self._monitor = monitor
            return
        cause = None if connecting.cancelled() else connecting.exception()
        if not exiting.cancelled():
            raise _StartupError("QEMU exited before its QMP monitor was ready") from cause
        # The monitor failing usually means QEMU is on its way out: give it a moment, so
        # the error can carry its exit code and output.
        if await self._wait_exit(_EXIT_GRACE):
            raise _StartupError("QEMU exited before its QMP monitor was ready") from cause
        if cause is None:
            reason = f"no QMP greeting within {self.connect_timeout:g}s"
        else:
            reason = str(cause)
        raise _StartupError(f"QEMU's QMP monitor did not come up: {reason}") from cause

    # -------------------------------------------------------------- shutdown

    async def _wait_exit(self, seconds: float) -> bool:
        """Wait up to *seconds* for QEMU to exit (and be reaped)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return True
        try:
            async with asyncio.timeout(seconds):
                await proc.wait()
        except TimeoutError:
            return False
        return True

    def _signal(self, signum: int) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._signalled_by_us = True
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    async def _stop(self, *, graceful: bool) -> None:
        """Take QEMU down (quit, SIGTERM, SIGKILL), reap it and clean up. Bounded."""
        proc = self._proc
        monitor, self._monitor = self._monitor, None
        try:
            if proc is not None and proc.returncode is None:
                if graceful and monitor is not None and monitor.connected:
                    with contextlib.suppress(MonitorError):
                        await monitor.quit(timeout=min(5.0, self.shutdown_timeout))
                if monitor is not None:
                    with contextlib.suppress(QmirrorError):
                        await monitor.close(expect_eof=True)
                    monitor = None
                if not graceful or not await self._wait_exit(self.shutdown_timeout):
                    self._signal(signal.SIGTERM)
                    if not await self._wait_exit(self.term_timeout):
                        _log.warning("QEMU pid %d ignored SIGTERM; sending SIGKILL", proc.pid)
                        self._signal(signal.SIGKILL)
                        await self._wait_exit(self.kill_timeout)
        finally:
            if monitor is not None:
                with contextlib.suppress(QmirrorError):
                    await monitor.close(expect_eof=True)
            self._finish()
        if proc is not None and proc.returncode is None:
            raise LaunchError(
                f"QEMU pid {proc.pid} survived SIGKILL for {self.kill_timeout:g}s",
                command=self._argv,
            )
        code = proc.returncode if proc is not None else None
        if proc is not None and code is not None and code < 0 and not self._signalled_by_us:
            _log.warning("QEMU pid %d died from signal %d: %s", proc.pid, -code, self._argv)

    def _finish(self) -> None:
        """Keep the log in memory and close its file."""
        proc = self._proc
        if proc is not None and proc.returncode is not None and self._finalizer is not None:
            # Reaped: the pid may be reused now, so the last-resort kill must go.
            self._finalizer.detach()
            self._finalizer = None
        if self._log_cache is None and self._log is not None:
            self._log_cache = self.log_text()
        if self._log is not None:
            self._log.close()
            self._log = None

    async def shutdown(self) -> int | None:
        """Stop QEMU (``quit``, then SIGTERM, then SIGKILL) and clean up.

        Idempotent. Shield it from cancellation if you call it yourself from code that
        may be cancelled; ``async with`` does that for you.

        :return: QEMU's exit code (negative: killed by that signal), or ``None`` if it
            was never started.
        :raise LaunchError: QEMU could not be killed (should never happen).
        """
        await self._stop(graceful=True)
        return self.exitcode

    async def kill(self) -> int | None:
        """SIGKILL QEMU right away, reap it and clean up.

        :return: the exit code (``-9``), or ``None`` if it was never started.
        """
        self._signal(signal.SIGKILL)
        await self._stop(graceful=False)
        return self.exitcode
