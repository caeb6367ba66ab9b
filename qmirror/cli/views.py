"""``qmirror tree`` (the region tree in the terminal) and ``qmirror map`` (HTML/SVG picture)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from qmirror.cli._common import EXIT_MATCH, EXIT_TROUBLE
from qmirror.cli._options import TARGET_HELP, add_model_options
from qmirror.errors import OutputError


if TYPE_CHECKING:
    from rich.console import Console


def cmd_tree(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.cli._inputs import open_target
    from qmirror.views.richtext import print_wide
    from qmirror.views.treeview import build_tree

    reading = open_target(args, err)
    tree = build_tree(
        reading.machine,
        title=reading.title,
        owners=args.owners,
        address_spaces=args.address_space or (),
        depth=args.depth,
        show_disabled=not args.hide_disabled,
    )
    if args.address_space and not tree.children:
        have = sorted({a.name for a in reading.machine.address_spaces})
        err.print(
            f"qmirror tree: no address space named {', '.join(args.address_space)} "
            f"(there are: {', '.join(have)})",
            highlight=False,
            markup=False,
        )
        return EXIT_TROUBLE
    print_wide(out, tree)
    return EXIT_MATCH


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def cmd_map(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.cli._inputs import open_readings
    from qmirror.views import mapsvg, mapview

    if not args.html and not args.svg:
        err.print(
            "qmirror map: say where to draw it: --html OUT.html and/or --svg OUT.svg",
            highlight=False,
        )
        return EXIT_TROUBLE
    readings = open_readings(args.targets, args, err, count=(1, 2))
    new = readings[-1]
    old = readings[0] if len(readings) == 2 else None
    data = mapview.prepare(new, old, address_spaces=args.address_space or ())
    if not data["views"]:
        have = sorted({a.name for a in new.machine.address_spaces})
        err.print(
            f"qmirror map: no address space named {', '.join(args.address_space)} "
            f"(there are: {', '.join(have)})",
            highlight=False,
            markup=False,
        )
        return EXIT_TROUBLE
    if args.html:
        _write(args.html, mapview.to_html(data))
        err.print(f"wrote {args.html}", highlight=False, markup=False)
    if args.svg:
        _write(args.svg, mapsvg.to_svg(data))
        err.print(f"wrote {args.svg}", highlight=False, markup=False)
    return EXIT_MATCH


def _levels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tree",
        help="show the region tree (type, size, priority, aliases)",
        description="Show the MemoryRegion tree of a VM as a tree: the kind "
        "of each region, its size in human units, priorities, "
        "alias arrows; disabled regions greyed.",
    )
    p.add_argument("targets", metavar="TARGET", nargs="*", help=TARGET_HELP)
    p.add_argument("--owners", action="store_true", help="show owners (needs -o texts)")
    p.add_argument(
        "--as",
        dest="address_space",
        action="append",
        metavar="NAME",
        help="only the address space(s) of this name (repeatable)",
    )
    p.add_argument("--depth", type=_levels, metavar="N", help="show N levels below each root")
    p.add_argument("--hide-disabled", action="store_true", help="leave disabled regions out")
    add_model_options(p)
    p.set_defaults(func=cmd_tree)

    p = sub.add_parser(
        "map",
        help="draw the memory map as one HTML file or an SVG",
        description="Draw each FlatView as a zoomable linear map (log-scaled "
        "so that 4 KiB of MMIO and 64 GiB of RAM both show), "
        "coloured by type, with the region tree beside it. With "
        "two TARGETs (old, new), what changed is highlighted.",
    )
    p.add_argument(
        "targets",
        metavar="TARGET",
        nargs="*",
        help=TARGET_HELP + "; two TARGETs (older, newer) to highlight changes",
    )
    p.add_argument(
        "--html",
        metavar="OUT.html",
        help="write one self-contained HTML file (no network needed to view it)",
    )
    p.add_argument("--svg", metavar="OUT.svg", help="write a static SVG picture")
    p.add_argument(
        "--as",
        dest="address_space",
        action="append",
        metavar="NAME",
        help="only the FlatView(s) of this address space (repeatable)",
    )
    add_model_options(p)
    # A paste of `-f` output alone is enough for this command (rebuild/flat.py).
    p.set_defaults(func=cmd_map, allow_flat=True)
