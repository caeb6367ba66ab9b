"""TARGET arguments of the viewing commands (``tree``, ``map``, ``ram-map``, ``diff``).

A TARGET is, in the order tried:

* a directory holding a capture (``scripts/capture-fixtures`` layout: the texts of
  ``info mtree -o -D`` and ``info mtree -f -o``, or ``info mtree`` and ``info mtree -f``,
  plus ``meta.json``) or a snapshot written by ``qmirror snapshot``;
* ``-``: a paste on standard input (read forgivingly, as every saved text is);
* ``TREE.txt`` or ``TREE.txt,FLAT.txt``: a saved tree text (``info mtree [-o] [-D]``),
  optionally with QEMU's ``info mtree -f [-o]`` of the same moment after a comma (it
  lets the gaps be inferred, see ``check``);
* a live QEMU: ``unix:PATH``, a socket path, ``tcp:HOST:PORT`` (read-only unless
  ``--pause``), ``libvirt:DOMAIN`` (``--connect URI``), or one launched for the command
  with ``--launch -- QEMU ARGS``
  (:mod:`qmirror.live.targets`; ``--boot S`` lets its firmware run first).

Settings from :mod:`qmirror.live.config` apply: the QEMU binary for ``--launch`` and its
``--boot`` time.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qmirror.cli._common import STDIN, one_stdin, read_text, run_async
from qmirror.errors import InputError, MonitorTimeout, TargetError
from qmirror.live.options import DEFAULT_TIMEOUT


if TYPE_CHECKING:
    from rich.console import Console

    from qmirror.live.snapshot import Snapshot
    from qmirror.live.targets import Target
    from qmirror.verify.reading import Reading


#: Text files of a capture directory: (tree, flat), best first (owners and disabled
#: regions make the richest model).
CAPTURE_LAYOUTS = (
    ("info-mtree-o-D.txt", "info-mtree-f-o.txt"),
    ("info-mtree.txt", "info-mtree-f.txt"),
)


@dataclass(slots=True)
class FileSource:
    """A TARGET made of saved texts."""

    label: str
    tree: Path
    flat: Path | None
    meta: dict[str, Any] = field(default_factory=dict)


def _meta(directory: Path) -> dict[str, Any]:
    path = directory / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(read_text(str(path)))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not JSON: {err}") from err
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object")
    return meta


def file_source(spec: str) -> FileSource | None:
    """The saved texts a TARGET names, or ``None`` when it names no file (a live target).

    :raise QmirrorError: a directory without a known layout, or a missing file in
        ``TREE.txt,FLAT.txt``.
    """
    if spec == STDIN:
        return FileSource("stdin", Path(STDIN), None)
    path = Path(spec)
    if path.is_dir():
        for tree, flat in CAPTURE_LAYOUTS:
            if (path / tree).is_file():
                flat_path = path / flat
                meta = _meta(path)
                label = meta.get("config") or path.name or spec
                return FileSource(
                    str(label), path / tree, flat_path if flat_path.is_file() else None, meta
                )
        known = ", ".join(t for t, _ in CAPTURE_LAYOUTS)
        raise InputError(f"{spec}: a directory without a tree text ({known})")
    if path.is_file():
        return FileSource(path.name, path, None)
    if "," in spec:
        tree, _, flat = spec.partition(",")
        for part in (tree, flat):
            if not Path(part).is_file():
                raise InputError(
                    f"{part}: no such file (in TARGET {spec!r}, which reads as TREE.txt,FLAT.txt)"
                )
        return FileSource(Path(tree).name, Path(tree), Path(flat))
    return None


def launch_settings(args: argparse.Namespace) -> None:
    """Fill in what the settings say for ``--launch`` (every command alike): the QEMU
    binary (``qemu``) and, where the command takes it, the firmware time
    (``boot-seconds``). Options on the command line win. Idempotent.

    :raise QmirrorError: a broken settings file (only read with ``--launch``).
    """
    from qmirror.live import config as qconfig

    if not getattr(args, "launch", False):
        return
    config = qconfig.from_args(args)
    if getattr(args, "qemu", None) is None:
        args.qemu = config.qemu
    # watch runs a launched guest all along: a boot time does not apply there.
    if getattr(args, "boot", None) is None and getattr(args, "command", None) != "watch":
        args.boot = config.boot_seconds


def _from_files(src: FileSource, args: argparse.Namespace) -> Reading:
    from qmirror.verify.reading import read

    tree_text = read_text(str(src.tree))
    flat_text = read_text(str(src.flat)) if src.flat is not None else None
    return read(
        tree_text,
        flat_text,
        label=src.label,
        meta=src.meta,
        accel=getattr(args, "accel", "auto"),
        strict=getattr(args, "strict", False),
        rules=not getattr(args, "no_rules", False),
        tree_name="stdin" if str(src.tree) == STDIN else str(src.tree),
        flat_name=str(src.flat) if src.flat is not None else None,
        allow_flat=getattr(args, "allow_flat", False),
    )


def reading_from_snapshot(
    snap: Snapshot,
    args: argparse.Namespace | None = None,
    *,
    label: str | None = None,
    ramblock_text: str | None = None,
) -> Reading:
    """A :class:`Reading` of a snapshot, completed as the command's options say."""
    from qmirror.verify.reading import from_snapshot

    return from_snapshot(
        snap,
        label=label,
        accel=getattr(args, "accel", "auto"),
        strict=getattr(args, "strict", False),
        rules=not getattr(args, "no_rules", False),
        ramblock_text=ramblock_text,
    )


async def read_live(
    target: Target,
    *,
    pause: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    boot: float | None = None,
) -> tuple[Snapshot, str]:
    """A snapshot of a live target and its ``info ramblock``, read in one session.

    Like :func:`qmirror.live.targets.open_snapshot` (same options and guarantees), plus the
    RAMBlock table that makes ``ram-map``'s block names exact.
    """
    import asyncio

    from qmirror.live import targets
    from qmirror.live.qmp import DEFAULT_CONNECT_TIMEOUT
    from qmirror.live.snapshot import take_snapshot

    if boot is not None and target.kind != "launch":
        raise TargetError(f"{target.label}: --boot only applies to a launched VM")
    connect = min(DEFAULT_CONNECT_TIMEOUT, timeout) if timeout > 0 else 0.001
    try:
        async with asyncio.timeout(timeout + (boot or 0.0)):
            async with targets.attach(
                target, control=pause, connect_timeout=connect, command_timeout=max(timeout, 0.001)
            ) as live:
                booted: float | None = None
                if live.instance is not None and boot is not None:
                    started = time.monotonic()
                    await live.monitor.execute("cont")
                    await asyncio.sleep(boot)
                    await live.monitor.execute("stop")
                    booted = round(time.monotonic() - started, 3)
                command = tuple(live.instance.command_line) if live.instance else ()
                snap = await take_snapshot(
                    live.monitor,
                    pause=pause and live.instance is None,
                    label=target.label,
                    command_line=command,
                    boot_seconds=booted,
                )
                ramblock = await live.monitor.hmp("info ramblock")
                return snap, ramblock
    except TimeoutError as exc:
        raise MonitorTimeout(
            f"no snapshot within {timeout + (boot or 0.0):g}s (--timeout)"
        ) from exc


def resolve(specs: list[str], args: argparse.Namespace) -> list[FileSource | Target]:
    """What the positional TARGETs and the live-target options name, in that order."""
    from qmirror.live import targets
    from qmirror.live.snapshot import META_FILE
    from qmirror.live.targets import Target

    out: list[FileSource | Target] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir() and (path / META_FILE).is_file():
            out.append(Target.snapshot(spec))
            continue
        src = file_source(spec)
        out.append(
            src
            if src is not None
            else targets.parse_target(spec, connect=getattr(args, "connect", None))
        )
    out.extend(targets.targets_from_args(args))
    return out


def _open(what: FileSource | Target, args: argparse.Namespace, *, ramblock: bool) -> Reading:
    from qmirror.live.snapshot import load

    if isinstance(what, FileSource):
        return _from_files(what, args)
    if what.kind == "snapshot":
        assert what.path is not None
        return reading_from_snapshot(load(what.path), args)
    return run_async(_open_live(what, args, ramblock=ramblock))


async def _open_live(what: Target, args: argparse.Namespace, *, ramblock: bool) -> Reading:
    from qmirror.live import targets

    pause = bool(getattr(args, "pause", False))
    timeout = float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT)
    boot = getattr(args, "boot", None) if what.kind == "launch" else None
    if ramblock:
        snap, text = await read_live(what, pause=pause, timeout=timeout, boot=boot)
        return reading_from_snapshot(snap, args, label=what.label, ramblock_text=text)
    snap = await targets.open_snapshot(what, pause=pause, timeout=timeout, boot=boot)
    return reading_from_snapshot(snap, args, label=what.label)


def open_readings(
    specs: list[str],
    args: argparse.Namespace,
    err: Console,
    *,
    count: tuple[int, int] = (1, 1),
    ramblock: bool = False,
) -> list[Reading]:
    """Read the TARGETs of a command (files, snapshots, live VMs), with a progress bar on
    a terminal.

    :param count: how many targets the command takes (at least, at most).
    :param ramblock: also read ``info ramblock`` from live targets.
    :raise QmirrorError: too few or too many targets; unreadable or malformed input; a
        failing QEMU.
    """
    from qmirror.cli._progress import Work

    launch_settings(args)
    one_stdin(*specs)
    wanted = resolve(specs, args)
    low, high = count
    if not low <= len(wanted) <= high:
        many = f"{low}" if low == high else f"{low} to {high}"
        raise TargetError(
            f"expected {many} TARGET{'s' if high > 1 else ''} (saved texts, a "
            f"snapshot directory or a live VM), got {len(wanted)}"
        )
    out = []
    with Work(err, total=len(wanted), what="reading") as work:
        for what in wanted:
            label = what.label
            work.step(f"reading {label}")
            out.append(_open(what, args, ramblock=ramblock))
        work.done()
    for reading in out:
        report_reading(err, reading)
    return out


def repairs_json(reading: Reading) -> dict[str, Any]:
    """``repairs`` and ``partial`` keys for a command's JSON, when the reader had to
    repair or assume anything (absent for intact QEMU output)."""
    if not reading.repairs and not reading.partial:
        return {}
    return {
        "repairs": [{"file": name, "line": r.line, "what": r.what} for name, r in reading.repairs],
        "partial": reading.partial,
    }


def report_reading(err: Console, reading: Reading) -> None:
    """What the forgiving reader repaired or assumed in a reading's texts (stderr)."""
    for name, r in reading.repairs:
        err.print(f"{name}:{r.line}: repaired: {r.what}", highlight=False, markup=False)
    if reading.partial:
        err.print(
            f"{reading.label}: partial: the text elides lines, lacks some (implied) "
            "or is `-f` output alone; regions and ranges it does not show are missing",
            highlight=False,
            markup=False,
        )


def open_reading(spec: str, args: argparse.Namespace, *, ramblock: bool = False) -> Reading:
    """Read one TARGET string (no progress bar, no live-target options).

    :raise QmirrorError: unreadable or malformed input; a failing QEMU.
    """
    what = resolve([spec], argparse.Namespace())[0]
    return _open(what, args, ramblock=ramblock)


def open_target(args: argparse.Namespace, err: Console, *, ramblock: bool = False) -> Reading:
    """The one TARGET of a command: ``args.targets`` or a live-target option."""
    return open_readings(getattr(args, "targets", []) or [], args, err, ramblock=ramblock)[0]
