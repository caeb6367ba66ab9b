"""``qmirror snapshot`` (save a live VM's texts and model) and ``qmirror watch`` (the mirror)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from qmirror.cli._common import EXIT_MATCH, EXIT_MISMATCH, EXIT_TROUBLE, run_async
from qmirror.errors import QmirrorError, TargetError


if TYPE_CHECKING:
    from rich.console import Console

    from qmirror.live.metrics import FleetMetrics
    from qmirror.live.mirror import Mirror
    from qmirror.live.targets import (
        Target,
    )


def _one_target(args: argparse.Namespace, command: str) -> Target:
    from qmirror.live.targets import targets_from_args

    positional = [args.target] if args.target else []
    targets = targets_from_args(args, positional=positional)
    if len(targets) != 1:
        raise TargetError(
            f"{command} takes exactly one target, got {len(targets)} "
            "(TARGET, --socket, --tcp or --launch)"
        )
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
    from qmirror.live.snapshot import save
    from qmirror.live.targets import open_snapshot

    target = _one_target(args, "snapshot")
    snap = run_async(
        open_snapshot(target, pause=args.pause, timeout=args.timeout, boot=args.boot, plain=True)
    )
    where = save(snap, args.out, overwrite=args.force)
    about = snap.metadata()
    tries = f"{snap.tries} {'try' if snap.tries == 1 else 'tries'}"
    out.print(
        f"{where}: QEMU {about['qemu_version']}, {about['machine']}, "
        f"{about['accelerator']}, {about['status']}; {tries}",
        highlight=False,
        markup=False,
    )
    return EXIT_MATCH


# -- watch -------------------------------------------------------------------------------


def _tagged(write: Callable[[str], None], label: str, jsonl: bool) -> Callable[[str], None]:
    """Name the target in every record when one process watches several."""
    if jsonl:
        head = "{" + f'"target": {json.dumps(label)}, '
        return lambda text: write(head + text[1:] if text.startswith("{") else text)
    return lambda text: write(f"[{label}] {text}")


async def _watch_one(
    args: argparse.Namespace,
    target: Target,
    metrics: FleetMetrics | None,
    several: bool,
    duration: float | None,
) -> int:
    from qmirror.live.mirror import Mirror, Trigger
    from qmirror.live.targets import attach
    from qmirror.live.writers import JsonLinesWriter, TextWriter, stream_writer

    mirror: Mirror | None = None
    try:
        async with attach(
            target,
            control=args.pause,
            connect_timeout=min(10.0, args.timeout),
            command_timeout=args.timeout,
        ) as live:
            ours = live.instance is not None
            mirror = Mirror(
                live.monitor,
                label=target.label,
                interval=args.interval,
                pause=args.pause and not ours,
                read_timeout=args.timeout,
                accel=args.accel,
                strict=args.strict,
                command_line=live.instance.command_line if live.instance else (),
            )
            if args.format != "none":
                write = stream_writer(sys.stdout)
                if several:
                    write = _tagged(write, target.label, args.format == "jsonl")
                writer = (
                    JsonLinesWriter(mirror, write, nops=args.nops)
                    if args.format == "jsonl"
                    else TextWriter(mirror, write)
                )
                writer.attach()
            if metrics is not None:
                metrics.watch(mirror, target.label)
            async with mirror:
                if ours:
                    # Our own QEMU starts paused: read its map, then let the guest run
                    # (firmware programming BARs and PAM is what there is to watch).
                    await mirror.refresh(Trigger("start"))
                    await live.monitor.execute("cont")
                await mirror.run(count=args.count, duration=duration)
    except QmirrorError:
        if mirror is None and metrics is not None:
            metrics.unreachable(target.label)  # never attached: no mirror told anyone
        raise
    return EXIT_MISMATCH if mirror.mismatches else EXIT_MATCH


async def _watch_target(
    args: argparse.Namespace,
    target: Target,
    metrics: FleetMetrics | None,
    several: bool,
    err: Console,
) -> int:
    """Watch one target; with ``--reconnect``, attach again after it went away or could
    not be reached, until ``--duration`` (if any) is over."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = None if args.duration is None else loop.time() + args.duration
    code = EXIT_MATCH
    while True:
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            return code
        try:
            return max(code, await _watch_one(args, target, metrics, several, left))
        except QmirrorError as exc:
            if args.reconnect is None and not several:
                raise
            code = EXIT_TROUBLE
            then = "" if args.reconnect is None else f" (again in {args.reconnect:g}s)"
            err.print(f"qmirror watch: {target.label}: {exc}{then}", highlight=False, markup=False)
            if args.reconnect is None:
                return code
        pause = args.reconnect
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - loop.time()))
        await asyncio.sleep(pause)


async def _watch(args: argparse.Namespace, targets: list[Target], err: Console) -> int:
    import asyncio

    from qmirror.live.metrics import FleetMetrics, parse_listen_address

    metrics: FleetMetrics | None = None
    if args.metrics is not None:
        host, port = parse_listen_address(args.metrics)
        metrics = FleetMetrics()
        bound = metrics.start(host, port)
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        err.print(
            f"qmirror watch: metrics on http://{shown}:{bound[1]}/metrics",
            highlight=False,
            markup=False,
        )
    try:
        # One VM that goes away or cannot be reached does not stop the others.
        several = len(targets) > 1
        codes = await asyncio.gather(
            *(_watch_target(args, t, metrics, several, err) for t in targets)
        )
        return max(codes)
    finally:
        if metrics is not None:
            metrics.stop()


def cmd_watch(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.live.targets import targets_from_args

    targets = targets_from_args(args, positional=args.targets)
    if not targets:
        raise QmirrorError(
            "watch needs a target (TARGET, --socket, --tcp, --targets-file or --launch)"
        )
    for target in targets:
        if target.kind == "snapshot":
            err.print(
                f"qmirror watch: {target.label} is a snapshot directory, not a live VM",
                highlight=False,
                markup=False,
            )
            return EXIT_TROUBLE
    if args.boot is not None:
        err.print(
            "qmirror watch: --boot does not apply (a launched VM runs while watched)",
            highlight=False,
            markup=False,
        )
        return EXIT_TROUBLE
    return run_async(_watch(args, targets, err))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from qmirror.cli._options import ACCELS
    from qmirror.live.options import add_target_options

    target_help = (
        "a live monitor (unix:PATH, a socket path, tcp:HOST:PORT, HOST:PORT, "
        "libvirt:DOMAIN) or, for snapshot, a snapshot directory"
    )
    p = sub.add_parser(
        "snapshot",
        help="save a VM's `info mtree` texts, metadata and model (JSON)",
        description="Read a consistent snapshot (tree, flat, tree until stable, or --pause) "
        "and write DIR: the four `info mtree` texts byte for byte, meta.json and "
        "model.json. All or nothing: DIR appears complete or not at all.",
    )
    p.add_argument("target", nargs="?", metavar="TARGET", help=target_help)
    p.add_argument("--out", metavar="DIR", required=True, help="directory to write")
    p.add_argument("--force", action="store_true", help="replace an existing snapshot in DIR")
    add_target_options(p, several=False)
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser(
        "watch",
        help="mirror live VMs: MemoryListener-style updates as they change",
        description="Keep a model of a live VM in sync (poll, and read at once on QMP events "
        "that signal topology changes), validate every reading against QEMU's "
        "-f, and print the topology updates QEMU's listeners would see. Several "
        "targets are watched at once (each line or record names its target); "
        "--metrics serves them all to Prometheus. Exit 0: every reading matched, "
        "1: a mismatch was seen, 2: a VM went away or readings kept failing.",
    )
    p.add_argument("targets", nargs="*", metavar="TARGET", help=target_help)
    p.add_argument(
        "--interval",
        metavar="SECONDS",
        type=_positive,
        default=1.0,
        help="seconds between polls (default 1)",
    )
    p.add_argument(
        "--format",
        choices=("text", "jsonl", "none"),
        default="text",
        help="text for people, JSON Lines (one record per callback; schema in "
        "the README), or none (with --metrics: errors only, on stderr)",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics of every target on HOST:PORT (:PORT for all "
        "addresses; port 0 picks a free one, printed on stderr)",
    )
    p.add_argument(
        "--reconnect",
        metavar="SECONDS",
        type=_positive,
        help="when a VM goes away or cannot be reached, try it again every "
        "SECONDS (default: stop watching it)",
    )
    p.add_argument("--count", metavar="N", type=_count, help="stop after N readings")
    p.add_argument("--duration", metavar="SECONDS", type=_positive, help="stop after SECONDS")
    p.add_argument(
        "--no-nop",
        dest="nops",
        action="store_false",
        help="jsonl: leave out region_nop records (unchanged ranges)",
    )
    p.add_argument(
        "--accel",
        choices=ACCELS,
        default="auto",
        help="accelerator for the validation (default: decided as check does)",
    )
    p.add_argument(
        "--strict", action="store_true", help="validate without inference from QEMU's -f"
    )
    add_target_options(p)
    p.set_defaults(func=cmd_watch)
