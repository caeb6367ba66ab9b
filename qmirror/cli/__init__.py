"""The ``qmirror`` command line.

Exit codes follow diff(1): 0 when every compared FlatView matches, 1 on any
mismatch, 2 on trouble (unreadable file, parse error, usage, a failing QEMU).
Interrupted (Ctrl-C, SIGTERM, SIGHUP): a QEMU of ours is shut down first, then the
status is 128 + the signal (130, 143, 129), without a traceback.
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
from qmirror.cli._common import EXIT_TROUBLE, consoles, handle_stop_signals, interrupted_exit
from qmirror.errors import QmirrorError


COMMANDS = (check, offline, live, slots, views, export, diff, settings)

_Q35 = "qemu-system-x86_64 -machine q35"
#: `--help` examples, per command (`None`: the top level).
EXAMPLES: dict[str | None, list[str]] = {
    None: [
        f"qmirror check --launch -- {_Q35}",
        "qmirror check --tree info-mtree-o-D.txt --flat info-mtree-f-o.txt",
        "qmirror tree unix:/run/vm.qmp --as memory --depth 2",
        "qmirror map fixtures/qemu-7.2/x86_64/q35 --html map.html",
    ],
    "check": [
        f"qmirror check --launch -- {_Q35}",
        f"qmirror check --boot 3 --junit-xml report.xml --launch -- {_Q35}",
        "qmirror check unix:/run/vm1.qmp tcp:127.0.0.1:4444 --format json",
        "qmirror check --tree info-mtree-o-D.txt --flat info-mtree-f-o.txt -v",
    ],
    "snapshot": [
        f"qmirror snapshot --out before --launch -- {_Q35}",
        f"qmirror snapshot --out after --boot 3 --launch -- {_Q35}",
        "qmirror snapshot unix:/run/vm.qmp --pause --out vm-now --force",
    ],
    "watch": [
        "qmirror watch unix:/run/vm.qmp --interval 0.5",
        f"qmirror watch --count 10 --format jsonl --launch -- {_Q35}",
    ],
    "tree": [
        "qmirror tree fixtures/qemu-7.2/x86_64/q35 --as memory --depth 1",
        f"qmirror tree --owners --launch -- {_Q35}",
    ],
    "map": [
        "qmirror map fixtures/qemu-7.2/x86_64/q35 --html map.html",
        "qmirror map before after --svg change.svg",
    ],
    "slots": [
        "qmirror slots fixtures/qemu-7.2/x86_64/pc",
        "qmirror slots --tree info-mtree-o-D.txt --flat info-mtree-f-o.txt --format json",
    ],
    "diff": ["qmirror diff before after", "qmirror diff before after --ignore-region '^kvm-'"],
}


def _epilog(lines: list[str]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual; keeps the examples' lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmirror",
        description="See, mirror and check QEMU's memory map: rebuild the MemoryRegion tree "
        "from `info mtree`, render its FlatViews as QEMU does, compare.",
    )
    parser.add_argument("--version", action="version", version=f"qmirror {__version__}")
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour in terminal output (default: auto; NO_COLOR is honoured)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="settings file (default: $QMIRROR_CONFIG, else the nearest "
        "pyproject.toml with [tool.qmirror])",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    for name, lines in EXAMPLES.items():
        target = parser if name is None else sub.choices[name]
        target.epilog = _epilog(lines)
        target.formatter_class = _HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        handle_stop_signals()  # the command line's process only, not a library caller
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return interrupted_exit()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # `--launch -- QEMU ARGS`: argparse would take the words after `--` for positionals,
    # so they are split off here and handed to the command as `args.passthrough`.
    passthrough: list[str] | None = None
    if "--" in words:
        cut = words.index("--")
        words, passthrough = words[:cut], words[cut + 1 :]
    args = parser.parse_args(words)
    args.passthrough = passthrough
    out, err = consoles(args.color)
    from qmirror.cli._inputs import launch_settings  # here: `--version` imports no command

    try:
        launch_settings(args)
        code: int = args.func(args, out, err)
        return code
    except QmirrorError as exc:
        err.print(f"qmirror {args.command}: {exc}", highlight=False, markup=False)
        junit = getattr(args, "junit_xml", None)
        if junit:
            from qmirror.views.report import junit_error

            try:
                junit_error(Path(junit), str(exc))
            except QmirrorError as also:  # the trouble's exit status stands
                err.print(f"qmirror {args.command}: {also}", highlight=False, markup=False)
        return EXIT_TROUBLE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
