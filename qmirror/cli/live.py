"""``qmirror snapshot`` (save a live VM's texts and model) and ``qmirror watch`` (the mirror)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from qmirror.cli._common import EXIT_MATCH, EXIT_MISMATCH, EXIT_TROUBLE
from qmirror.cli._options import ACCELS
from qmirror.errors import QmirrorError
from qmirror.live.options import add_target_options


if TYPE_CHECKING:
    from rich.console import Console

    from qmirror.live.targets import Target


def _one_target(args: argparse.Namespace, command: str) -> Target:
    from qmirror.live.targets import targets_from_args

    positional = [args.target] if args.target else []
    targets = targets_from_args(args, positional=positional)
    if len(targets) != 1:
        raise QmirrorError(f"{command} takes exactly one target, got {len(targets)} "
                           "(TARGET, --socket, --tcp or --launch)")
    return targets[0]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


# -- snapshot --------------------------------------------------------------------------


def cmd_snapshot(args: argparse.Namespace, out: Console, err: Console) -> int:
    import asyncio

    from qmirror.live.snapshot import save
    from qmirror.live.targets import open_snapshot

    target = _one_target(args, "snapshot")
    snap = asyncio.run(open_snapshot(target, pause=args.pause, timeout=args.timeout,
                                     boot=args.boot, plain=True))
    where = save(snap, args.out, overwrite=args.force)
    about = snap.metadata()
    tries = f"{snap.tries} {'try' if snap.tries == 1 else 'tries'}"
    out.print(f"{where}: QEMU {about['qemu_version']}, {about['machine']}, "
              f"{about['accelerator']}, {about['status']}; {tries}", highlight=False,
              markup=False)
    return EXIT_MATCH


# -- watch -------------------------------------------------------------------------------


async def _watch(args: argparse.Namespace, target: Target) -> int:
    from qmirror.live.mirror import JsonLinesWriter, Mirror, TextWriter, Trigger, stream_writer
    from qmirror.live.targets import attach

    async with attach(target, control=args.pause, connect_timeout=min(10.0, args.timeout),
                      command_timeout=args.timeout) as live:
        ours = live.instance is not None
        mirror = Mirror(live.monitor, label=target.label, interval=args.interval,
                        pause=args.pause and not ours, read_timeout=args.timeout,
                        accel=args.accel, strict=args.strict,
                        command_line=live.instance.command_line if live.instance else ())
        write = stream_writer(sys.stdout)
        writer = (JsonLinesWriter(mirror, write, nops=args.nops) if args.format == "jsonl"
                  else TextWriter(mirror, write))
        writer.attach()
        async with mirror:
            if ours:
                # Our own QEMU starts paused: read its map, then let the guest run
                # (firmware programming BARs and PAM is what there is to watch).
                await mirror.refresh(Trigger("start"))
                await live.monitor.execute("cont")
            await mirror.run(count=args.count, duration=args.duration)
    return EXIT_MISMATCH if mirror.mismatches else EXIT_MATCH


def cmd_watch(args: argparse.Namespace, out: Console, err: Console) -> int:
    import asyncio

    target = _one_target(args, "watch")
    if target.kind == "snapshot":
        err.print(f"qmirror watch: {target.label} is a snapshot directory, not a live VM",
                  highlight=False, markup=False)
        return EXIT_TROUBLE
    if args.boot is not None:
        err.print("qmirror watch: --boot does not apply (a launched VM runs while watched)",
                  highlight=False, markup=False)
        return EXIT_TROUBLE
    return asyncio.run(_watch(args, target))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    target_help = ("a live monitor (unix:PATH, a socket path, tcp:HOST:PORT, HOST:PORT)"
                   " or, for snapshot, a snapshot directory")
    p = sub.add_parser(
        "snapshot", help="save a VM's `info mtree` texts, metadata and model (JSON)",
        description="Read a consistent snapshot (tree, flat, tree until stable, or --pause) "
                    "and write DIR: the four `info mtree` texts byte for byte, meta.json and "
                    "model.json. All or nothing: DIR appears complete or not at all.")
    p.add_argument("target", nargs="?", metavar="TARGET", help=target_help)
    p.add_argument("--out", metavar="DIR", required=True, help="directory to write")
    p.add_argument("--force", action="store_true", help="replace an existing snapshot in DIR")
    add_target_options(p, several=False)
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser(
        "watch", help="mirror a live VM: MemoryListener-style updates as it changes",
        description="Keep a model of a live VM in sync (poll, and read at once on QMP events "
                    "that signal topology changes), validate every reading against QEMU's "
                    "-f, and print the topology updates QEMU's listeners would see. Exit 0: "
                    "every reading matched, 1: a mismatch was seen, 2: the VM went away or "
                    "readings kept failing.")
    p.add_argument("target", nargs="?", metavar="TARGET", help=target_help)
    p.add_argument("--interval", metavar="SECONDS", type=_positive, default=1.0,
                   help="seconds between polls (default 1)")
    p.add_argument("--format", choices=("text", "jsonl"), default="text",
                   help="text for people, or JSON Lines (one record per callback; schema in "
                        "the README)")
    p.add_argument("--count", metavar="N", type=_count, help="stop after N readings")
    p.add_argument("--duration", metavar="SECONDS", type=_positive,
                   help="stop after SECONDS")
    p.add_argument("--no-nop", dest="nops", action="store_false",
                   help="jsonl: leave out region_nop records (unchanged ranges)")
    p.add_argument("--accel", choices=ACCELS, default="auto",
                   help="accelerator for the validation (default: decided as check does)")
    p.add_argument("--strict", action="store_true",
                   help="validate without inference from QEMU's -f")
    add_target_options(p, several=False)
    p.set_defaults(func=cmd_watch)
