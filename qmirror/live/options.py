"""The live-target options of the command line, light to import.

Every ``qmirror`` command registers its options at start-up, so what they need lives
here, apart from :mod:`qmirror.live.targets` (asyncio, QMP, the launcher), which only
the commands that reach a VM import.
"""

from __future__ import annotations

import argparse
from typing import Final


__all__ = [
    "DEFAULT_BINARY",
    "DEFAULT_MATRIX",
    "DEFAULT_TIMEOUT",
    "DEFAULT_URI",
    "add_target_options",
]

#: The QEMU launched when none is named (``--qemu``, ``$QMIRROR_QEMU``, settings).
DEFAULT_BINARY: Final = "qemu-system-x86_64"
#: Seconds allowed for one target: connecting (or launching) and reading a snapshot.
#: ``--boot`` time comes on top.
DEFAULT_TIMEOUT: Final = 60.0
#: The libvirt URI used when neither ``--connect`` nor ``LIBVIRT_DEFAULT_URI`` says
#: otherwise.
DEFAULT_URI: Final = "qemu:///system"
#: Where ``scripts/qemu-matrix`` keeps its QEMU versions (``$QMIRROR_QEMU_MATRIX`` overrides).
DEFAULT_MATRIX: Final = "/var/cache/qmirror"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be finite and >= 0: {text!r}")
    return value


def add_target_options(
    parser: argparse.ArgumentParser, *, several: bool = True, qemu_version: bool = True
) -> None:
    """Add ``--socket``, ``--tcp``, ``--connect``, ``--targets-file``, ``--launch``,
    ``--boot``, ``--pause``, ``--timeout`` and ``--qemu``.

    ``--launch`` is a flag; QEMU's words are everything after ``--`` (split off by
    :func:`qmirror.cli.main` and handed over as ``args.passthrough``), so qmirror's
    own options, ``--boot`` included, go anywhere before ``--``::

        qmirror check --boot 3 --launch -- qemu-system-x86_64 -machine q35
        qmirror check --launch --boot 3 -- qemu-system-x86_64 -machine q35

    :param several: whether the command takes several targets (``--targets-file``).
    :param qemu_version: add ``--qemu-version`` (off where the command already has it as
        the dialect of its texts; with ``--launch`` it then also picks the QEMU).
    """
    g = parser.add_argument_group("live targets")
    g.add_argument(
        "--socket",
        metavar="PATH",
        action="append",
        default=[],
        help="QMP monitor on a UNIX socket (repeatable)",
    )
    g.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="QMP monitor on TCP (repeatable; QMP is unauthenticated: "
        "a non-loopback host gets a warning)",
    )
    g.add_argument(
        "--connect",
        metavar="URI",
        default=None,
        help="libvirt URI for libvirt:DOMAIN targets (default "
        f"$LIBVIRT_DEFAULT_URI, else {DEFAULT_URI})",
    )
    if several:
        g.add_argument(
            "--targets-file",
            metavar="FILE",
            help="read TARGETs from FILE, one per line, '#' comments",
        )
    g.add_argument(
        "--launch",
        action="store_true",
        help="launch QEMU for the job: `--launch -- [BINARY] QEMU-ARGS...`; "
        "everything after `--` is QEMU's, qmirror's options go before "
        "it; QMP, -display none and -S are added",
    )
    g.add_argument(
        "--boot",
        metavar="SECONDS",
        type=_seconds,
        help="with --launch: let the guest run SECONDS first (firmware "
        "programs BARs, PAM, SMRAM), then stop it",
    )
    g.add_argument(
        "--pause",
        action="store_true",
        help="stop a running VM while reading (needs control of it: "
        "sends stop, and cont only if it was running)",
    )
    g.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"per target: connect/launch and read (default {DEFAULT_TIMEOUT:g}; "
        "--boot time comes on top)",
    )
    g.add_argument(
        "--qemu",
        metavar="BINARY",
        default=None,
        help=f"QEMU for --launch when ARGS do not start with one "
        f"(default {DEFAULT_BINARY}, or $QMIRROR_QEMU)",
    )
    if not qemu_version:
        return
    g.add_argument(
        "--qemu-version",
        metavar="X.Y",
        default=None,
        help="with --launch: run QEMU X.Y (or a series: 11) as provided by "
        "scripts/qemu-matrix under $QMIRROR_QEMU_MATRIX "
        f"(default {DEFAULT_MATRIX}); the binary's name picks the arch",
    )
