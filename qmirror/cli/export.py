"""``qmirror ram-map``: the guest-physical ranges backed by RAM, for introspection tools."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from qmirror.cli._common import EXIT_MATCH, EXIT_TROUBLE, write_stdout
from qmirror.cli._options import TARGET_HELP, add_model_options


if TYPE_CHECKING:
    from rich.console import Console


def cmd_ram_map(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.cli._inputs import open_target
    from qmirror.views import rammap

    reading = open_target(args, err, ramblock=True)
    names = args.address_space or ()
    if names and not any(a.name in names for a in reading.machine.address_spaces):
        have = sorted({a.name for a in reading.machine.address_spaces})
        err.print(
            f"qmirror ram-map: no address space named {', '.join(names)} "
            f"(there are: {', '.join(have)})",
            highlight=False,
            markup=False,
        )
        return EXIT_TROUBLE
    rows = rammap.ram_map(reading, address_spaces=names)
    if args.format == "csv":
        write_stdout(rammap.to_csv(rows))
    else:
        from qmirror.cli._inputs import repairs_json

        doc = rammap.to_json(reading, rows) | repairs_json(reading)
        write_stdout(json.dumps(doc, indent=2) + "\n")
    if reading.ramblock_text is None and any(not r.block_exact for r in rows):
        err.print(
            "note: RAMBlock names of device-owned regions are the region names; QEMU "
            "may prefix them with the device's bus path (block_exact: false). A live "
            "target gives exact names from `info ramblock`.",
            highlight=False,
            markup=False,
        )
    return EXIT_MATCH


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ram-map",
        help="list guest-physical ranges backed by RAM (JSON or CSV)",
        description="Every guest-physical range backed by RAM: start, size, the RAMBlock "
        "and the offset in it, read-only, and the address spaces that map it; "
        "what memory-introspection tools need to translate guest-physical "
        "addresses. Schema: qmirror.ram-map/1 (see the README).",
    )
    p.add_argument("targets", metavar="TARGET", nargs="*", help=TARGET_HELP)
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument(
        "--as",
        dest="address_space",
        action="append",
        metavar="NAME",
        help="only the FlatView(s) of this address space (repeatable)",
    )
    add_model_options(p)
    # A paste of `-f` output alone is enough for this command (rebuild/flat.py).
    p.set_defaults(func=cmd_ram_map, allow_flat=True)
