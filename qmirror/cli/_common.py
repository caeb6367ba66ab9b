"""What every ``qmirror`` command shares: exit codes, consoles, reading and writing."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from qmirror.errors import QmirrorError


if TYPE_CHECKING:
    from rich.console import Console


#: diff(1) conventions: 0 every compared FlatView matches, 1 a mismatch, 2 trouble.
EXIT_MATCH, EXIT_MISMATCH, EXIT_TROUBLE = 0, 1, 2


def consoles(color: str) -> tuple[Console, Console]:
    """Console for results (stdout) and for diagnostics (stderr)."""
    from rich.console import Console  # here: `--version` needs no rich

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
