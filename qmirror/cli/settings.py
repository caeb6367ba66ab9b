"""``qmirror config``: the effective settings and where each one came from."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from qmirror.cli._common import EXIT_MATCH


if TYPE_CHECKING:
    from rich.console import Console


def cmd_config(args: argparse.Namespace, out: Console, err: Console) -> int:
    from rich.table import Table

    from qmirror.live import config as qconfig
    from qmirror.views.richtext import print_wide

    config = qconfig.from_args(args)
    table = Table(
        title=f"qmirror settings (file: {config.file or 'none'})",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("setting", style="bold")
    table.add_column("value")
    table.add_column("from", style="dim")
    for key, value, origin in qconfig.describe(config):
        table.add_row(key, value, origin)
    print_wide(out, table)
    return EXIT_MATCH


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "config",
        help="show the effective settings and where they come from",
        description="Settings come from the command line, QMIRROR_* "
        "environment variables, [tool.qmirror] in the nearest "
        "pyproject.toml (or --config FILE), then defaults.",
    )
    p.set_defaults(func=cmd_config)
