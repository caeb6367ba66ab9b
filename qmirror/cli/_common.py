"""What every ``qmirror`` command shares: exit codes, consoles, reading and writing."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from rich.console import Console

from qmirror.errors import QmirrorError


#: diff(1) conventions: 0 every compared FlatView matches, 1 a mismatch, 2 trouble.
EXIT_MATCH, EXIT_MISMATCH, EXIT_TROUBLE = 0, 1, 2
#: Interrupted: 128 + the signal, as a shell reports it (130 for Ctrl-C).
EXIT_INTERRUPTED = 128 + signal.SIGINT

#: Signals that end a command the way Ctrl-C does (``timeout`` and CI runners send
#: SIGTERM; a closed terminal, SIGHUP).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_stopped_by: list[int] = []


def _stop(signum: int, frame: FrameType | None) -> None:
    """Act on SIGTERM/SIGHUP as on SIGINT: whatever handles SIGINT at this moment
    (asyncio.run's, which cancels the main task so QEMU is shut down in order, or
    Python's, which raises KeyboardInterrupt) handles this one too."""
    _stopped_by.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def handle_stop_signals() -> None:
    """Install the SIGTERM/SIGHUP handlers (main thread only; ignored signals stay so)."""
    _stopped_by.clear()
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _stop)


def interrupted_exit() -> int:
    """The exit status after KeyboardInterrupt: 128 + the first stop signal, else 130."""
    return 128 + _stopped_by[0] if _stopped_by else EXIT_INTERRUPTED


def consoles(color: str) -> tuple[Console, Console]:
    """Console for results (stdout) and for diagnostics (stderr)."""
    force = {"always": True, "never": False}.get(color)
    no_color = color == "never" or None
    out = Console(force_terminal=force, no_color=no_color, soft_wrap=True)
    err = Console(stderr=True, force_terminal=force, no_color=no_color, soft_wrap=True)
    return out, err


def read_text(path: str) -> str:
    """Read a text file as is (CR LF kept: QEMU's monitor output has it)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except OSError as err:
        raise QmirrorError(f"cannot read {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise QmirrorError(f"{path} is not UTF-8 text (byte {err.start})") from err


def write_stdout(text: str) -> None:
    """Write exactly these bytes to stdout (no newline translation)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode())
    sys.stdout.buffer.flush()
