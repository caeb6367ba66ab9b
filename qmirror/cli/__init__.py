"""The ``qmirror`` command line.

Exit codes follow diff(1): 0 when every compared FlatView matches, 1 on any
mismatch, 2 on trouble (unreadable file, parse error, usage, a failing QEMU).
Results go to stdout; diagnostics to stderr. Each command lives in its own module
with a ``register(subparsers)`` function; :data:`COMMANDS` lists them in help order.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from qmirror import __version__
from qmirror.cli import check, diff, export, live, offline, settings, slots, views
from qmirror.cli._common import EXIT_TROUBLE, consoles
from qmirror.errors import QmirrorError


COMMANDS = (check, offline, live, slots, views, export, diff, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmirror",
        description="See, mirror and check QEMU's memory map: rebuild the MemoryRegion tree "
                    "from `info mtree`, render its FlatViews as QEMU does, compare.")
    parser.add_argument("--version", action="version", version=f"qmirror {__version__}")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour in terminal output (default: auto; NO_COLOR is honoured)")
    parser.add_argument("--config", metavar="FILE",
                        help="settings file (default: $QMIRROR_CONFIG, else the nearest "
                             "pyproject.toml with [tool.qmirror])")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # `--launch -- QEMU ARGS`: argparse would take the words after `--` for positionals,
    # so they are split off here and handed to the command as `args.passthrough`.
    passthrough: list[str] | None = None
    if "--" in words:
        cut = words.index("--")
        words, passthrough = words[:cut], words[cut + 1:]
    args = parser.parse_args(words)
    args.passthrough = passthrough
    out, err = consoles(args.color)
    try:
        code: int = args.func(args, out, err)
        return code
    except QmirrorError as exc:
        err.print(f"qmirror {args.command}: {exc}", highlight=False, markup=False)
        junit = getattr(args, "junit_xml", None)
        if junit:
            from qmirror.views.report import junit_error

            junit_error(Path(junit), str(exc))
        return EXIT_TROUBLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
