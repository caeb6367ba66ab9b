"""The live-target options of the command line, light to import.

Every ``qmirror`` command registers its options at start-up, so what they need lives
here, apart from :mod:`qmirror.live.targets` (asyncio, QMP, the launcher), which only
the commands that reach a VM import.
"""

from __future__ import annotations

import argparse
from typing import Final


__all__ = ["DEFAULT_BINARY", "DEFAULT_TIMEOUT", "add_target_options"]

#: The QEMU launched when none is named (``--qemu``, ``$QMIRROR_QEMU``, settings).
DEFAULT_BINARY: Final = "qemu-system-x86_64"
#: Seconds allowed for one target: connecting (or launching) and reading a snapshot.
#: ``--boot`` time comes on top.
DEFAULT_TIMEOUT: Final = 60.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be finite and >= 0: {text!r}")
    return value


def add_target_options(parser: argparse.ArgumentParser, *, several: bool = True) -> None:
    """Add ``--socket``, ``--tcp``, ``--targets-file``, ``--launch``, ``--boot``,
    ``--pause``, ``--timeout`` and ``--qemu``.

    ``--launch`` takes the rest of the command line: ``--launch -- qemu-system-x86_64
    -machine q35`` (the ``--`` is split off by :func:`qmirror.cli.main` and handed over
    as ``args.passthrough``) or ``--launch qemu-system-x86_64 -machine q35``.

    :param several: whether the command takes several targets (``--targets-file``).
    """
    g = parser.add_argument_group("live targets")
    g.add_argument("--socket", metavar="PATH", action="append", default=[],
                   help="QMP monitor on a UNIX socket (repeatable)")
    g.add_argument("--tcp", metavar="HOST:PORT", action="append", default=[],
                   help="QMP monitor on TCP (repeatable; QMP is unauthenticated: "
                        "a non-loopback host gets a warning)")
    if several:
        g.add_argument("--targets-file", metavar="FILE",
                       help="read TARGETs from FILE, one per line, '#' comments")
    g.add_argument("--launch", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="launch QEMU for the job: `--launch -- [BINARY] QEMU-ARGS...` "
                        "(last on the line); QMP, -display none and -S are added")
    g.add_argument("--boot", metavar="SECONDS", type=_seconds,
                   help="with --launch: let the guest run SECONDS first (firmware "
                        "programs BARs, PAM, SMRAM), then stop it")
    g.add_argument("--pause", action="store_true",
                   help="stop a running VM while reading (needs control of it: "
                        "sends stop, and cont only if it was running)")
    g.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=DEFAULT_TIMEOUT,
                   help=f"per target: connect/launch and read (default {DEFAULT_TIMEOUT:g}; "
                        "--boot time comes on top)")
    g.add_argument("--qemu", metavar="BINARY", default=None,
                   help=f"QEMU for --launch when ARGS do not start with one "
                        f"(default {DEFAULT_BINARY}, or $QMIRROR_QEMU)")


