"""What every ``qmirror`` command shares: exit codes, consoles, reading and writing."""

from __future__ import annotations

import sys

from rich.console import Console

from qmirror.errors import QmirrorError


#: diff(1) conventions: 0 every compared FlatView matches, 1 a mismatch, 2 trouble.
EXIT_MATCH, EXIT_MISMATCH, EXIT_TROUBLE = 0, 1, 2


def consoles(color: str) -> tuple[Console, Console]:
    """Console for results (stdout) and for diagnostics (stderr)."""
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
        raise QmirrorError("standard input (-) can be read only once: give one `-`")


def read_text(path: str) -> str:
    """Read a text file as is (CR LF kept: QEMU's monitor output has it); ``-`` is
    standard input."""
    if path == STDIN:
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise QmirrorError(f"standard input is not UTF-8 text (byte {err.start})") from err
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
