"""Snapshots: QEMU's ``info mtree`` texts of one moment, with what identifies the VM.

:func:`take_snapshot` reads a live monitor; :func:`save` and :func:`load` keep a
snapshot in a directory::

    DIR/
      info-mtree-o-D.txt   info mtree -o -D   (the tree qmirror rebuilds the model from)
      info-mtree-f-o.txt   info mtree -f -o   (QEMU's FlatViews, to compare with)
      info-mtree.txt       info mtree         (optional)
      info-mtree-f.txt     info mtree -f      (optional)
      meta.json            the snapshot's metadata (schema ``qmirror.snapshot/1``)
      model.json           the rebuilt model (:mod:`qmirror.core.modeljson`)

The texts are QEMU's replies byte for byte (UTF-8, CR LF kept), so a fixture directory
made by ``scripts/capture-fixtures`` loads as a snapshot too.

A running guest can change its memory map between two HMP commands. A snapshot is
therefore read as tree, flat, tree; if the two trees differ, the flat text is read
again and then the tree, until two consecutive trees agree (``tries`` counts the
rounds). With ``pause`` the VM is stopped for the reading instead, and resumed only if
it was running; that needs a monitor created with ``allow_control=True``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from qmirror.core.model import Machine
from qmirror.core.modeljson import machine_to_json
from qmirror.errors import MonitorError, ReadingError, SnapshotError
from qmirror.live.qmp import MachineInfo, Monitor
from qmirror.verify.check import check


__all__ = [
    "DEFAULT_MAX_TRIES",
    "FILES",
    "SCHEMA",
    "Snapshot",
    "load",
    "save",
    "take_snapshot",
    "utc_now",
]

SCHEMA: Final = "qmirror.snapshot/1"
#: How many tree-flat-tree rounds to try before giving up on a busy guest.
DEFAULT_MAX_TRIES: Final = 5

TREE_FILE: Final = "info-mtree-o-D.txt"
FLAT_FILE: Final = "info-mtree-f-o.txt"
TREE_PLAIN_FILE: Final = "info-mtree.txt"
FLAT_PLAIN_FILE: Final = "info-mtree-f.txt"
META_FILE: Final = "meta.json"
MODEL_FILE: Final = "model.json"
#: Snapshot text files and the HMP command each holds.
FILES: Final = {
    TREE_FILE: "info mtree -o -D",
    FLAT_FILE: "info mtree -f -o",
    TREE_PLAIN_FILE: "info mtree",
    FLAT_PLAIN_FILE: "info mtree -f",
}


def utc_now() -> str:
    """Now, in UTC, ISO 8601 with microseconds (``2026-11-25T13:13:12.123456+00:00``)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """QEMU's texts of one moment and what is known about the VM.

    :param tree: ``info mtree -o -D`` exactly as QEMU sent it.
    :param flat: ``info mtree -f -o`` of the same moment.
    :param label: the target it came from (socket, address, command, directory).
    :param taken_at: UTC time of the reading, ISO 8601.
    :param tries: tree-flat-tree rounds it took to read a stable map (1: first time).
    :param info: what :meth:`Monitor.describe` said just before the reading (QEMU
        version and package, arch, machine type, accelerator, run state); ``None``
        when unknown (a directory without it).
    :param tree_plain: ``info mtree``, if read.
    :param flat_plain: ``info mtree -f``, if read.
    :param paused: the VM was stopped by qmirror for the reading (``--pause``).
    :param command_line: QEMU's argv, when qmirror launched it (or a fixture says).
    :param boot_seconds: how long the guest ran before the reading, when launched.
    :param extra: any other metadata (kept from a loaded ``meta.json``).
    """

    tree: str
    flat: str
    label: str
    taken_at: str
    tries: int = 1
    info: MachineInfo | None = None
    tree_plain: str | None = None
    flat_plain: str | None = None
    paused: bool = False
    command_line: tuple[str, ...] = ()
    boot_seconds: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tree_text(self) -> str:
        """Same as :attr:`tree` (the name :mod:`qmirror.verify.reading` uses)."""
        return self.tree

    @property
    def flat_text(self) -> str:
        """Same as :attr:`flat`."""
        return self.flat

    @property
    def meta(self) -> dict[str, Any]:
        """Same as :meth:`metadata` (``meta.json`` keys: ``machine``, ``qemu_version``,
        ``accelerator``, ``command_line``, ...)."""
        return self.metadata()

    def metadata(self) -> dict[str, Any]:
        """What identifies the snapshot, as JSON (also the core of ``meta.json``)."""
        info = self.info
        return {
            "target": self.label,
            "taken_at": self.taken_at,
            "tries": self.tries,
            "paused_by_qmirror": self.paused,
            "qemu_version": None if info is None else info["qemu_version"],
            "qemu_package": None if info is None else info["qemu_package"],
            "arch": None if info is None else info["arch"],
            "machine": None if info is None else info["machine"],
            "machine_qom_type": None if info is None else info["machine_qom_type"],
            "accelerator": None if info is None else info["accelerator"],
            "kvm_present": None if info is None else info["kvm_present"],
            "status": None if info is None else info["status"],
            "running": None if info is None else info["running"],
            "command_line": list(self.command_line) or None,
            "boot_seconds": self.boot_seconds,
        }


# -- reading a live VM -------------------------------------------------------------


async def _read_stable(
    monitor: Monitor, *, max_tries: int, plain: bool
) -> tuple[str, str, str | None, str | None, int]:
    """Tree, flat (and the plain texts), tree again, until two trees in a row agree."""
    tree = await monitor.info_mtree(owners=True, disabled=True)
    for attempt in range(1, max_tries + 1):
        flat = await monitor.info_mtree(flatview=True, owners=True)
        tree_plain = await monitor.info_mtree() if plain else None
        flat_plain = await monitor.info_mtree(flatview=True) if plain else None
        again = await monitor.info_mtree(owners=True, disabled=True)
        if again == tree:
            return tree, flat, tree_plain, flat_plain, attempt
        tree = again
    raise ReadingError(
        f"the memory map changed during each of {max_tries} readings: the guest is busy "
        "reprogramming it (use --pause for a consistent snapshot)"
    )


async def take_snapshot(
    monitor: Monitor,
    *,
    pause: bool = False,
    max_tries: int = DEFAULT_MAX_TRIES,
    plain: bool = False,
    label: str = "",
    command_line: tuple[str, ...] = (),
    boot_seconds: float | None = None,
    known: MachineInfo | None = None,
) -> Snapshot:
    """Read a consistent snapshot from a live monitor.

    Without *pause* nothing but ``query-*`` and ``info ...`` is sent. With *pause*,
    ``stop`` is sent only if the VM is running, and ``cont`` only if it was; the
    *monitor* must have been created with ``allow_control=True`` (else
    :class:`~qmirror.errors.CommandRefused`, before anything is sent).

    :param plain: also read ``info mtree`` and ``info mtree -f``.
    :param max_tries: tree-flat-tree rounds before giving up on a guest that keeps
        changing its map.
    :param known: what :meth:`Monitor.describe` said earlier about this VM; then only
        the run state is asked again (a watcher reads the same VM over and over).
    :raise ReadingError: the map never held still.
    :raise MonitorError: the monitor failed.
    """
    if max_tries < 1:
        raise ValueError("max_tries must be at least 1")
    if known is None:
        info = await monitor.describe()
    else:
        status, running = await monitor.run_state()
        info = MachineInfo(**{**known, "status": status, "running": running})
    stopped = False
    if pause and info["running"]:
        await monitor.execute("stop")
        stopped = True
    try:
        taken_at = utc_now()
        tree, flat, tree_plain, flat_plain, tries = await _read_stable(
            monitor, max_tries=max_tries, plain=plain
        )
    except BaseException:
        if stopped and monitor.connected:
            # Resume even though the reading failed; the first error is the one to see.
            with contextlib.suppress(MonitorError):
                await monitor.execute("cont")
        raise
    if stopped:
        await monitor.execute("cont")
    return Snapshot(
        tree=tree,
        flat=flat,
        label=label,
        taken_at=taken_at,
        tries=tries,
        info=info,
        tree_plain=tree_plain,
        flat_plain=flat_plain,
        paused=stopped,
        command_line=tuple(command_line),
        boot_seconds=boot_seconds,
    )


# -- directories -------------------------------------------------------------------


def _texts(snapshot: Snapshot) -> dict[str, str]:
    texts = {TREE_FILE: snapshot.tree, FLAT_FILE: snapshot.flat}
    if snapshot.tree_plain is not None:
        texts[TREE_PLAIN_FILE] = snapshot.tree_plain
    if snapshot.flat_plain is not None:
        texts[FLAT_PLAIN_FILE] = snapshot.flat_plain
    return texts


def _write_file(path: Path, data: bytes) -> None:
    """Write *data* to a temporary file next to *path*, flush it to disk, rename it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes it 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


#: Every name a snapshot directory written by :func:`save` may hold.
WRITTEN: Final = frozenset({*FILES, META_FILE, MODEL_FILE})


def ours(directory: Path) -> str | None:
    """Why *directory* is not a snapshot that :func:`save` wrote (``None``: it is).

    Ours means: ``meta.json`` is a JSON object with ``"schema": "qmirror.snapshot/1"``
    and ``"saved_by": "qmirror snapshot"``, and the directory holds nothing but the
    files a snapshot is made of. Only such a directory is ever replaced.
    """
    try:
        names = sorted(entry.name for entry in directory.iterdir())
    except OSError as exc:
        return f"cannot list it: {exc.strerror or exc}"
    foreign = [n for n in names if n not in WRITTEN or not (directory / n).is_file()]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        return f"it holds files qmirror snapshot does not write ({shown})"
    try:
        meta = json.loads((directory / META_FILE).read_bytes())
    except (OSError, ValueError):
        return f"its {META_FILE} is missing or not JSON"
    if (
        not isinstance(meta, dict)
        or meta.get("schema") != SCHEMA
        or (meta.get("saved_by") != "qmirror snapshot")
    ):
        return f"its {META_FILE} was not written by qmirror snapshot (schema {SCHEMA})"
    return None


def _remove_ours(directory: Path) -> None:
    """Remove a snapshot directory file by known file: anything else stays (and so
    does the directory, then)."""
    for name in WRITTEN:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()


def save(
    snapshot: Snapshot,
    directory: str | os.PathLike[str],
    *,
    machine: Machine | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a snapshot directory; all of it or, on any error, nothing.

    Everything is written into a new staging directory first (each file through a
    temporary file and a rename, flushed to disk). A new directory then appears with
    one rename; into an existing empty directory (``--out .``) the files are moved
    one by one, ``meta.json`` last, so a reader that waits for it sees them all.

    :param machine: the model to write as ``model.json``; by default it is rebuilt
        with :func:`qmirror.verify.check.check` (rules, then inference from QEMU's ``-f``),
        whose verdict is recorded in ``meta.json`` too.
    :param overwrite: replace an existing snapshot directory, if :func:`save` wrote it
        (see :func:`ours`); otherwise *directory* must not exist or be empty. Nothing
        qmirror did not write is ever removed.
    :raise SnapshotError: the directory is in the way or cannot be written.
    """
    target = Path(directory)
    verdict: str | None = None
    if machine is None:
        result = check(snapshot.tree, snapshot.flat)
        machine, verdict = result.machine, result.comparison.result
    texts = {name: text.encode("utf-8") for name, text in _texts(snapshot).items()}
    meta: dict[str, Any] = {"schema": SCHEMA, **dict(snapshot.extra), **snapshot.metadata()}
    meta["files"] = {
        name: {"hmp": FILES[name], "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in texts.items()
    }
    meta["model"] = MODEL_FILE
    if verdict is not None:
        meta["check"] = {"result": verdict}
    meta["saved_by"] = "qmirror snapshot"
    model = json.dumps(machine_to_json(machine), indent=1) + "\n"

    empty = False
    if target.exists():
        if not target.is_dir():
            raise SnapshotError(f"{target} exists and is not a directory")
        try:
            empty = not any(target.iterdir())
        except OSError as exc:
            raise SnapshotError(f"cannot read {target}: {exc.strerror or exc}") from exc
        if not empty:
            if not overwrite:
                raise SnapshotError(f"{target} is not empty (use --force to replace a snapshot)")
            why = ours(target)
            if why is not None:
                raise SnapshotError(f"{target} is not replaced: {why}")
    # An existing empty directory may be the working directory or a mount point, which
    # cannot be renamed over: stage inside it. Otherwise stage beside it.
    real = target.resolve()
    where = real if empty else real.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{real.name}.", dir=where))
    except OSError as exc:
        raise SnapshotError(f"cannot write {target}: {exc.strerror or exc}") from exc
    old: Path | None = None
    try:
        for name, data in texts.items():
            _write_file(staging / name, data)
        _write_file(staging / MODEL_FILE, model.encode())
        _write_file(staging / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
        if empty:
            for name in [*texts, MODEL_FILE, META_FILE]:
                os.rename(staging / name, real / name)
            staging.rmdir()
            return target
        os.chmod(staging, 0o755)
        if real.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{real.name}.old.", dir=real.parent))
            os.rename(real, old / "snapshot")
        os.rename(staging, real)
    except OSError as exc:
        if old is not None and not real.exists():
            os.rename(old / "snapshot", real)  # put the previous one back
        if empty:
            for name in WRITTEN:  # what this call moved in, if anything
                with contextlib.suppress(FileNotFoundError):
                    (real / name).unlink()
        shutil.rmtree(staging, ignore_errors=True)
        raise SnapshotError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        if old is not None:
            _remove_ours(old / "snapshot")
            with contextlib.suppress(OSError):
                old.rmdir()
    return target


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"{path} is not UTF-8 text (byte {exc.start})") from exc


def _info_from_meta(meta: Mapping[str, Any]) -> MachineInfo | None:
    """The MachineInfo a ``meta.json`` records (ours or a fixture's), if complete."""
    version = meta.get("qemu_version")
    machine = meta.get("machine")
    if not isinstance(version, str) or not isinstance(machine, str):
        return None
    try:
        triple = tuple(int(x) for x in version.split(".")[:3])
        major, minor, micro = (*triple, 0, 0, 0)[:3]
    except ValueError:
        return None
    status = meta.get("status", meta.get("status_at_capture"))
    return MachineInfo(
        qemu_version=version,
        qemu_version_tuple=(major, minor, micro),
        qemu_package=str(meta.get("qemu_package") or ""),
        arch=str(meta.get("arch") or ""),
        machine=machine,
        machine_qom_type=str(meta.get("machine_qom_type") or machine + "-machine"),
        accelerator=str(meta.get("accelerator") or ""),
        kvm_present=bool(meta.get("kvm_present", False)),
        status=str(status or ""),
        running=bool(meta.get("running", False)),
    )


def load(directory: str | os.PathLike[str]) -> Snapshot:
    """Read a snapshot directory (ours, or a fixture captured by scripts/capture-fixtures).

    :raise SnapshotError: no ``meta.json``, a missing text, or unreadable files.
    """
    where = Path(directory)
    meta_path = where / META_FILE
    if not meta_path.is_file():
        raise SnapshotError(f"{where} is not a snapshot directory (no {META_FILE})")
    try:
        meta = json.loads(_read(meta_path))
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{meta_path}:{exc.lineno}:{exc.colno}: {exc.msg}") from exc
    if not isinstance(meta, dict):
        raise SnapshotError(f"{meta_path}: not a JSON object")
    for name in (TREE_FILE, FLAT_FILE):
        if not (where / name).is_file():
            raise SnapshotError(f"{where}: {name} ({FILES[name]}) is missing")
    tree_plain = where / TREE_PLAIN_FILE
    flat_plain = where / FLAT_PLAIN_FILE
    boot = meta.get("boot_seconds")
    known = set(Snapshot.__dataclass_fields__) | {"target", "schema"}
    return Snapshot(
        tree=_read(where / TREE_FILE),
        flat=_read(where / FLAT_FILE),
        label=str(where),
        taken_at=str(meta.get("taken_at") or meta.get("captured_at") or ""),
        tries=int(meta.get("tries") or 1),
        info=_info_from_meta(meta),
        tree_plain=_read(tree_plain) if tree_plain.is_file() else None,
        flat_plain=_read(flat_plain) if flat_plain.is_file() else None,
        paused=bool(meta.get("paused_by_qmirror", False)),
        command_line=tuple(str(a) for a in meta.get("command_line") or ()),
        boot_seconds=float(boot) if isinstance(boot, int | float) else None,
        extra={k: v for k, v in meta.items() if k not in known},
    )
