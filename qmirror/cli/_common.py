"""What every ``qmirror`` command shares: exit codes, consoles, reading and writing."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from qmirror.errors import InputError


if TYPE_CHECKING:
    from rich.console import Console


#: diff(1) conventions: 0 every compared FlatView matches, 1 a mismatch, 2 trouble.
EXIT_MATCH, EXIT_MISMATCH, EXIT_TROUBLE = 0, 1, 2
#: Interrupted: 128 + the signal, as a shell reports it (130 for Ctrl-C).
EXIT_INTERRUPTED = 128 + signal.SIGINT

_T = TypeVar("_T")

#: Signals that end a command the way Ctrl-C does (``timeout`` and CI runners send
#: SIGTERM; a closed terminal, SIGHUP).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_stopped_by: list[int] = []
#: The stop signals this process handles (not those it was started with ignored).
_handled: list[int] = []


def _stop(signum: int, frame: FrameType | None) -> None:
    """Outside the event loop a stop signal acts as Ctrl-C does there: no QEMU of ours
    runs then (they all live inside :func:`run_async`)."""
    _stopped_by.append(signum)
    raise KeyboardInterrupt


def handle_stop_signals() -> None:
    """Install the SIGTERM/SIGHUP handlers (main thread only; ignored signals stay so)."""
    _stopped_by.clear()
    _handled.clear()
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _stop)
            _handled.append(signum)


def run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` for a command. A stop signal cancels the command's task, as
    asyncio.run does on Ctrl-C: every QEMU of ours is then shut down in order (that
    cannot be cancelled half-way, and a second signal only asks again), and the command
    ends as after Ctrl-C (KeyboardInterrupt; the status is 128 + the signal).

    The signals are taken by the event loop (``add_signal_handler``), not by a handler
    that could interrupt whatever bytecode runs: this works whatever SIGINT's state
    (a background job of a script has SIGINT ignored, and asyncio then installs none).
    """
    import asyncio

    if not _handled or threading.current_thread() is not threading.main_thread():
        return asyncio.run(coro)
    try:
        result = asyncio.run(_stoppable(coro))
    except asyncio.CancelledError:
        if _stopped_by:
            raise KeyboardInterrupt from None
        raise
    finally:
        for signum in _handled:  # closing the loop put the default action back
            signal.signal(signum, _stop)
    if _stopped_by:  # the command finished its work anyway: still an interruption
        raise KeyboardInterrupt
    return result


async def _stoppable(coro: Coroutine[Any, Any, _T]) -> _T:
    import asyncio

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        _stopped_by.append(signum)
        task.cancel()

    for signum in _handled:
        loop.add_signal_handler(signum, stop, signum)
    return await coro


def interrupted_exit() -> int:
    """The exit status after KeyboardInterrupt: 128 + the first stop signal, else 130."""
    return 128 + _stopped_by[0] if _stopped_by else EXIT_INTERRUPTED


def consoles(color: str) -> tuple[Console, Console]:
    """Console for results (stdout) and for diagnostics (stderr)."""
    from rich.console import Console

    force = {"always": True, "never": False}.get(color)
    no_color = color == "never" or None
    out = Console(force_terminal=force, no_color=no_color, soft_wrap=True)
    err = Console(stderr=True, force_terminal=force, no_color=no_color, soft_wrap=True)
    return out, err


#: The file name that means standard input (``xclip -o | qmirror tree -``).
STDIN = "-"


def one_stdin(*paths: str | None) -> None:
    """Refuse ``-`` named twice: standard input can be read once."""
    if sum(p == STDIN for p in paths) > 1:
        raise InputError("standard input (-) can be read only once: give one `-`")


def read_text(path: str) -> str:
    """Read a text file as is (CR LF kept: QEMU's monitor output has it); ``-`` is
    standard input."""
    if path == STDIN:
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"standard input is not UTF-8 text (byte {err.start})") from err
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start})") from err


def write_stdout(text: str) -> None:
    """Write exactly these bytes to stdout (no newline translation)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode())
    sys.stdout.buffer.flush()
