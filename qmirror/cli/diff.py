"""``qmirror diff A B``: what differs between two readings, tree and FlatViews (diff(1) codes)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import TYPE_CHECKING

from qmirror.cli._common import EXIT_MATCH, EXIT_MISMATCH, write_stdout
from qmirror.cli._options import TARGET_HELP, add_model_options


if TYPE_CHECKING:
    from rich.console import Console

    from qmirror.verify import snapdiff
    from qmirror.verify.reading import Reading


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def print_diff(
    d: snapdiff.SnapshotDiff,
    old: Reading,
    new: Reading,
    out: Console,
    *,
    ignored: str,
    limit: int | None = None,
) -> None:
    """The difference for people: regions (+ added, - removed, ~ changed), then ranges."""
    from rich.markup import escape

    from qmirror.verify import snapdiff

    out.print(f"[bold red]---[/] {escape(old.title)}", highlight=False)
    out.print(f"[bold green]+++[/] {escape(new.title)}", highlight=False)
    out.print(
        f"[bold]Regions[/]: {len(d.added)} added, {len(d.removed)} removed, "
        f"{len(d.changed)} changed",
        highlight=False,
    )

    def cap(n: int) -> int:
        return n if limit is None else min(n, limit)

    # Identical lines (q35's thirteen PAM windows opening at once) are counted, not repeated.
    lines: Counter[str] = Counter()
    for mr in d.added:
        lines[
            f"  [green]+ {escape(snapdiff.region_path(mr))}[/]  "
            f"[dim]{escape(snapdiff.describe_region(mr))}[/]"
        ] += 1
    for mr in d.removed:
        lines[
            f"  [red]- {escape(snapdiff.region_path(mr))}[/]  "
            f"[dim]{escape(snapdiff.describe_region(mr))}[/]"
        ] += 1
    for c in d.changed:
        owner = snapdiff.owner_of(c.new)
        fields = "; ".join(
            f"{k}: {snapdiff.shown(k, a)} → {snapdiff.shown(k, b)}"
            for k, (a, b) in c.fields.items()
        )
        lines[
            f"  [yellow]~ {escape(snapdiff.region_path(c.new))}[/]"
            + (f" [dim]{escape(owner)}[/]" if owner else "")
            + f"  {escape(fields)}"
        ] += 1
    for line, n in list(lines.items())[: cap(len(lines))]:
        out.print(line + (f" (×{n})" if n > 1 else ""), highlight=False)
    hidden = len(lines) - cap(len(lines))
    if hidden:
        out.print(
            f"  … {hidden} more lines (all of them with --all or --format json)", highlight=False
        )
    out.print(
        f"[bold]FlatViews[/]: {len(d.views)} "
        f"{'group' if len(d.views) == 1 else 'groups'} of address spaces changed",
        highlight=False,
    )
    for v in d.views:
        what = {"added": "new address space", "removed": "address space gone"}.get(v.status, "")
        counts = f"{len(v.removed)} ranges removed, {len(v.added)} added"
        out.print(
            f"  [bold cyan]{escape(_names(v.address_spaces))}[/]: "
            f"{escape(what + '; ' if what else '')}{counts}",
            highlight=False,
        )
        for r in v.removed[: cap(len(v.removed))]:
            out.print(f"    [red]- {escape(snapdiff.range_line(r))}[/]", highlight=False)
        for r in v.added[: cap(len(v.added))]:
            out.print(f"    [green]+ {escape(snapdiff.range_line(r))}[/]", highlight=False)
        more = max(0, len(v.removed) - cap(len(v.removed))) + max(
            0, len(v.added) - cap(len(v.added))
        )
        if more:
            out.print(f"    … {more} more ranges", highlight=False)
    if d.ignored:
        out.print(f"[dim]{d.ignored} differences ignored ({escape(ignored)})[/]", highlight=False)
    verdict = "[bold green]SAME[/]" if d.same else "[bold red]DIFFERENT[/]"
    out.print(verdict, highlight=False)


def cmd_diff(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.cli._inputs import open_readings
    from qmirror.live import config as qconfig
    from qmirror.verify import snapdiff

    config = qconfig.from_args(
        args, ignore_regions=args.ignore_region, ignore_fields=args.ignore_field
    )
    rules = config.ignore
    old, new = open_readings(args.targets, args, err, count=(2, 2))
    d = snapdiff.diff_readings(old, new, rules)
    if args.format == "json":
        from qmirror.cli._inputs import repairs_json

        doc = snapdiff.to_json(d, old, new, rules)
        for side, reading in (("old", old), ("new", new)):
            doc[side] |= repairs_json(reading)
        write_stdout(json.dumps(doc, indent=2) + "\n")
    else:
        print_diff(d, old, new, out, ignored=rules.describe(), limit=None if args.all else 30)
    return EXIT_MATCH if d.same else EXIT_MISMATCH


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "diff",
        help="what differs between two readings (tree and FlatViews)",
        description="Compare two readings of memory maps (saved texts, snapshot directories "
        "or live VMs): regions added, removed or changed (matched by path, name "
        "and owner) and, per address space, the ranges QEMU's update would delete "
        "and add. Exit 0: same, 1: different, 2: trouble (as diff(1)).",
    )
    p.add_argument(
        "targets",
        metavar="TARGET",
        nargs="*",
        help=TARGET_HELP + " (two: the older, then the newer)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--all", action="store_true", help="list every difference (text output)")
    p.add_argument(
        "--ignore-region",
        action="append",
        metavar="REGEX",
        help="leave out regions whose name matches (repeatable; replaces "
        "[tool.qmirror.ignore] regions)",
    )
    p.add_argument(
        "--ignore-field",
        action="append",
        metavar="FIELD",
        help="leave out a field: type, addr, size, priority, enabled, alias, "
        "readonly, nonvolatile, offset, ... (repeatable)",
    )
    add_model_options(p)
    # A paste of `-f` output alone is enough for this command (rebuild/flat.py).
    p.set_defaults(func=cmd_diff, allow_flat=True)
