"""What qmirror reads from: a monitor socket, a TCP address, a QEMU it launches, a directory.

A :class:`Target` names one VM (or a saved snapshot of one). Commands build them from
positional TARGET strings (:func:`parse_target`) and from the options that
:func:`add_target_options` adds (:func:`targets_from_args`); :func:`attach` gives a
connected :class:`~qmirror.live.qmp.Monitor` for a live target, and :func:`open_snapshot`
one consistent :class:`~qmirror.live.snapshot.Snapshot` of any target.

TARGET strings, in the order they are tried:

=============================  ====================================================
``DIR`` (has ``meta.json``)    a snapshot directory (``qmirror snapshot``, fixtures)
``unix:PATH``                  a QMP monitor on a UNIX socket
``PATH`` (an existing socket)  the same
``tcp:HOST:PORT``              a QMP monitor on TCP (``tcp:[::1]:4444`` for IPv6)
``HOST:PORT``                  the same
``libvirt:DOMAIN``             a libvirt-managed QEMU, by domain name or UUID, through
                               libvirt's monitor passthrough (``--connect URI``,
                               default ``$LIBVIRT_DEFAULT_URI``, else
                               ``qemu:///system``); see :mod:`qmirror.live.libvirt`
=============================  ====================================================

QMP has no authentication: anyone who reaches the port owns the VM. A TCP target whose
host is not a loopback address is accepted with a warning on stderr (once per host).

A launched QEMU (``--launch -- [BINARY] ARGS...``, qmirror's options before ``--``) is
qmirror's own: it gets a QMP socketpair, ``-display none`` and ``-S``; with ``--boot S``
the guest runs S seconds (SeaBIOS programs BARs, PAM, SMRAM) and is stopped again
before the reading. It is always shut down afterwards, and dies with qmirror.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import re
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from qmirror.errors import MonitorError, MonitorTimeout, QmirrorError, TargetError
from qmirror.live.launcher import QemuInstance
from qmirror.live.libvirt import LibvirtMonitor, default_uri
from qmirror.live.options import (
    DEFAULT_BINARY,
    DEFAULT_MATRIX,
    DEFAULT_TIMEOUT,
    add_target_options,
)
from qmirror.live.qmp import DEFAULT_CONNECT_TIMEOUT, Monitor
from qmirror.live.snapshot import DEFAULT_MAX_TRIES, META_FILE, Snapshot, load, take_snapshot


__all__ = [
    "DEFAULT_MATRIX",
    "DEFAULT_TIMEOUT",
    "Attached",
    "Target",
    "TargetKind",
    "add_target_options",
    "attach",
    "matrix_binary",
    "open_snapshot",
    "parse_target",
    "read_targets_file",
    "targets_from_args",
]

TargetKind = Literal["unix", "tcp", "launch", "snapshot", "libvirt"]

#: How much later than the per-phase deadlines the whole job's deadline falls, so
#: that the phase that was late is the one reported.
_GRACE: Final = 1.0

_HOST_PORT = re.compile(r"\A(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d+)\Z")
_warned_hosts: set[str] = set()


@dataclass(frozen=True, slots=True)
class Target:
    """One VM to read, or a saved snapshot of one.

    :param kind: ``"unix"``, ``"tcp"``, ``"launch"`` or ``"snapshot"``.
    :param label: how reports name it (the TARGET string, or the QEMU command).
    :param path: the socket path (``unix``) or the directory (``snapshot``).
    :param host: TCP host (``tcp``).
    :param port: TCP port (``tcp``).
    :param args: QEMU arguments after qmirror's own (``launch``).
    :param binary: QEMU executable (``launch``).
    :param domain: domain name or UUID (``libvirt``).
    :param uri: libvirt connection URI (``libvirt``).
    """

    kind: TargetKind
    label: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    args: tuple[str, ...] = ()
    binary: str = DEFAULT_BINARY
    domain: str | None = None
    uri: str | None = None

    @property
    def address(self) -> str | tuple[str, int]:
        """What :meth:`Monitor.connect` takes: a path or ``(host, port)``."""
        if self.kind == "unix" and self.path is not None:
            return self.path
        if self.kind == "tcp" and self.host is not None and self.port is not None:
            return (self.host, self.port)
        raise TargetError(f"{self.label}: a {self.kind} target has no monitor address")

    @property
    def live(self) -> bool:
        """Whether it is a running VM (not a saved snapshot)."""
        return self.kind != "snapshot"

    @classmethod
    def unix(cls, path: str, label: str | None = None) -> Target:
        return cls("unix", label or f"unix:{path}", path=path)

    @classmethod
    def tcp(cls, host: str, port: int, label: str | None = None) -> Target:
        shown = f"[{host}]" if ":" in host else host
        return cls("tcp", label or f"tcp:{shown}:{port}", host=host, port=port)

    @classmethod
    def launch(
        cls, args: Sequence[str], binary: str = DEFAULT_BINARY, label: str | None = None
    ) -> Target:
        shown = " ".join([binary, *args])
        return cls("launch", label or f"launch:{shown}", args=tuple(args), binary=binary)

    @classmethod
    def libvirt(cls, domain: str, uri: str | None = None, label: str | None = None) -> Target:
        return cls("libvirt", label or f"libvirt:{domain}", domain=domain, uri=default_uri(uri))

    @classmethod
    def snapshot(cls, path: str, label: str | None = None) -> Target:
        return cls("snapshot", label or path, path=path)


def _stderr_warning(message: str) -> None:
    print(f"qmirror: warning: {message}", file=sys.stderr, flush=True)


def is_loopback(host: str) -> bool:
    """Whether *host* names this machine only (``localhost``, 127/8, ``::1``).

    IPv4 is read as the resolver reads it (inet_aton: ``127.1``, ``0x7f.1``,
    ``2130706433``), since that is where the connection goes; ``::ffff:127.0.0.1`` is
    loopback too.
    """
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _tcp(spec: str, text: str, warn: Callable[[str], None] | None) -> Target:
    match = _HOST_PORT.match(text)
    if match is None:
        raise TargetError(f"TARGET {spec!r}: expected HOST:PORT (or [IPv6]:PORT)")
    host = match.group("v6") or match.group("host")
    port = int(match.group("port"))
    if not 0 < port < 65536:
        raise TargetError(f"TARGET {spec!r}: port {port} is out of range")
    if not is_loopback(host) and host not in _warned_hosts:
        _warned_hosts.add(host)
        (warn or _stderr_warning)(
            f"{host}:{port} is not a loopback address: QMP has no authentication, "
            "anyone who can reach that port controls the VM"
        )
    return Target.tcp(host, port, label=spec)


def parse_target(
    spec: str, *, warn: Callable[[str], None] | None = None, connect: str | None = None
) -> Target:
    """Turn a TARGET string into a :class:`Target` (see the module docstring).

    :param connect: the libvirt URI for ``libvirt:DOMAIN`` (``--connect``).
    :param warn: called with the warning about a non-loopback TCP host (default:
        print it on stderr); each host is warned about once per process.
    :raise TargetError: a string that names none of the above, saying why.
    """
    if not spec.strip():
        raise TargetError("TARGET is empty")
    if spec.startswith("unix:"):
        path = spec.removeprefix("unix:")
        if not path:
            raise TargetError(f"TARGET {spec!r}: no socket path after 'unix:'")
        return Target.unix(path, label=spec)
    if spec.startswith("tcp:"):
        return _tcp(spec, spec.removeprefix("tcp:"), warn)
    if spec.startswith("libvirt:"):
        domain = spec.removeprefix("libvirt:")
        if not domain.strip():
            raise TargetError(f"TARGET {spec!r}: no domain name or UUID after 'libvirt:'")
        return Target.libvirt(domain, connect, label=spec)
    try:
        st = os.stat(spec)
    except OSError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            if (Path(spec) / META_FILE).is_file():
                return Target.snapshot(spec)
            raise TargetError(f"TARGET {spec!r}: a directory without {META_FILE}, not a snapshot")
        if stat.S_ISSOCK(st.st_mode):
            return Target.unix(spec, label=spec)
        raise TargetError(
            f"TARGET {spec!r}: exists but is neither a socket nor a snapshot directory"
        )
    if _HOST_PORT.match(spec):
        return _tcp(spec, spec, warn)
    raise TargetError(
        f"TARGET {spec!r}: no such file or directory (a TARGET is a socket, a snapshot "
        "directory, unix:PATH, tcp:HOST:PORT or HOST:PORT)"
    )


def read_targets_file(
    path: str, *, warn: Callable[[str], None] | None = None, connect: str | None = None
) -> list[Target]:
    """One TARGET per line; blank lines and lines starting with ``#`` are skipped.

    :raise TargetError: unreadable file, or ``FILE:LINE:`` and what is wrong there.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise TargetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TargetError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
    out = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            out.append(parse_target(text, warn=warn, connect=connect))
        except QmirrorError as exc:
            raise TargetError(f"{path}:{n}: {exc}") from exc
    return out


# -- command-line options ----------------------------------------------------------


def launch_argv(args: argparse.Namespace) -> list[str] | None:
    """The QEMU words given with ``--launch``: those after ``--``."""
    launch = bool(getattr(args, "launch", False))
    passthrough: list[str] | None = getattr(args, "passthrough", None)
    if not launch:
        if passthrough:
            raise TargetError("arguments after '--' are only taken with --launch")
        return None
    if not passthrough:
        raise TargetError(
            "--launch needs QEMU arguments after '--': --launch -- qemu-system-x86_64 ..."
        )
    return list(passthrough)


def targets_from_args(args: argparse.Namespace, *, positional: Sequence[str] = ()) -> list[Target]:
    """Every target the command line names, in this order: positional TARGETs,
    ``--socket``, ``--tcp``, ``--targets-file`` lines, ``--launch``.

    :raise TargetError: a malformed TARGET, an unreadable file, ``--boot`` without
        ``--launch``.
    """
    connect = getattr(args, "connect", None)
    out = [parse_target(s, connect=connect) for s in positional]
    out += [Target.unix(p, label=f"unix:{p}") for p in getattr(args, "socket", None) or ()]
    out += [_tcp(t, t, None) for t in getattr(args, "tcp", None) or ()]
    targets_file = getattr(args, "targets_file", None)
    if targets_file:
        out += read_targets_file(targets_file, connect=connect)
    words = launch_argv(args)
    version = getattr(args, "qemu_version", None)
    if words is not None:
        default = getattr(args, "qemu", None) or os.environ.get("QMIRROR_QEMU") or DEFAULT_BINARY
        binary, qemu_args = (default, words) if words[0].startswith("-") else (words[0], words[1:])
        if version is not None:
            binary = matrix_binary(version, binary)
        out.append(Target.launch(qemu_args, binary=binary))
    if getattr(args, "boot", None) is not None and words is None:
        raise TargetError("--boot only applies to a VM started with --launch")
    return out


# -- live access --------------------------------------------------------------------


@dataclass(slots=True)
class Attached:
    """A live target, connected: its monitor, and the QEMU process if we launched it."""

    target: Target
    monitor: Monitor
    instance: QemuInstance | None = None


@contextlib.asynccontextmanager
async def attach(
    target: Target,
    *,
    control: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    command_timeout: float | None = None,
    debug: bool = False,
) -> AsyncIterator[Attached]:
    """Connect to a live target for the duration of the block.

    A ``launch`` target is started (paused, ``-S``) and shut down afterwards; its
    monitor always allows control, since the VM is ours. Any other monitor is
    read-only unless *control* is set.

    :param control: create the monitor with ``allow_control=True`` (``--pause``).
    :raise TargetError: a snapshot directory (not live), a failed connect or launch.
    """
    if target.kind == "snapshot":
        raise TargetError(f"{target.label}: a snapshot directory is not a live VM")
    timeout = command_timeout if command_timeout is not None else connect_timeout * 3
    if target.kind == "libvirt":
        assert target.domain is not None
        async with LibvirtMonitor(
            uri=target.uri,
            allow_control=control,
            command_timeout=timeout,
            debug=debug,
            name=target.label,
        ) as vmon:
            await vmon.connect(target.domain, timeout=connect_timeout)
            yield Attached(target, vmon)
        return
    if target.kind == "launch":
        async with QemuInstance(
            target.args,
            binary=target.binary,
            paused=True,
            connect_timeout=connect_timeout,
            command_timeout=timeout,
            debug=debug,
        ) as vm:
            yield Attached(target, vm.monitor, vm)
        return
    async with Monitor(
        allow_control=control, command_timeout=timeout, debug=debug, name=target.label
    ) as mon:
        await mon.connect(target.address, timeout=connect_timeout)
        yield Attached(target, mon)


async def _boot(monitor: Monitor, seconds: float) -> float:
    """Let our paused guest run for *seconds*, then stop it; notice at once if QEMU dies.

    :return: how long it ran.
    """
    started = time.monotonic()
    await monitor.execute("cont")
    sleeping = asyncio.create_task(asyncio.sleep(seconds))
    closed = asyncio.create_task(monitor.wait_closed())
    try:
        await asyncio.wait((sleeping, closed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeping, closed):
            task.cancel()
        await asyncio.wait((sleeping, closed))
    if not monitor.connected:
        raise MonitorError(
            f"QEMU went away (connection closed) while the guest was "
            f"booting ({time.monotonic() - started:.1f}s of {seconds:g}s)"
        )
    await monitor.execute("stop")
    return round(time.monotonic() - started, 3)


async def open_snapshot(
    target: Target,
    *,
    pause: bool = False,
    timeout: float = DEFAULT_TIMEOUT,  # one deadline for the whole job
    boot: float | None = None,
    plain: bool = False,
    max_tries: int = DEFAULT_MAX_TRIES,
) -> Snapshot:
    """One consistent snapshot of *target*: read live (connect, read, close), loaded
    from a snapshot directory, or from a QEMU launched for it and shut down after.

    :param pause: stop a running VM for the reading (the monitor is then created
        with ``allow_control=True``; only then).
    :param timeout: seconds for the whole job; *boot* comes on top.
    :param boot: for ``launch``: let the guest run this long first, then stop it.
    :param plain: also read ``info mtree`` and ``info mtree -f``.
    :raise TargetError: on any failure, with QEMU's own message for a failed launch.
    """
    if target.kind == "snapshot":
        assert target.path is not None
        return load(target.path)
    if boot is not None and target.kind != "launch":
        raise TargetError(f"{target.label}: --boot only applies to a launched VM")
    timeout = max(timeout, 0.001)
    connect_timeout = min(DEFAULT_CONNECT_TIMEOUT, timeout)
    total = timeout + (boot or 0.0)
    try:
        # The connect and every command have deadlines of their own, which say what
        # went wrong; this one (a little later) only bounds the whole job.
        async with asyncio.timeout(total + _GRACE):
            async with attach(
                target, control=pause, connect_timeout=connect_timeout, command_timeout=timeout
            ) as live:
                booted: float | None = None
                if live.instance is not None and boot is not None:
                    booted = await _boot(live.monitor, boot)
                command = tuple(live.instance.command_line) if live.instance else ()
                return await take_snapshot(
                    live.monitor,
                    pause=pause and live.instance is None,
                    max_tries=max_tries,
                    plain=plain,
                    label=target.label,
                    command_line=command,
                    boot_seconds=booted,
                )
    except TimeoutError as exc:
        raise MonitorTimeout(f"no snapshot within {total:g}s (--timeout)") from exc


_SERIES = re.compile(r"\d+(\.\d+)?")


def matrix_binary(version: str, binary: str) -> str:
    """The ``scripts/qemu-matrix`` wrapper of QEMU *version* (``X.Y``, or a series such
    as ``11`` for whichever 11.x is there) with the file name of *binary*.

    :raise TargetError: a malformed version, or no such QEMU in the matrix.
    """
    if not _SERIES.fullmatch(version):
        raise TargetError(f"--qemu-version: not a QEMU version X.Y: {version!r}")
    root = Path(os.environ.get("QMIRROR_QEMU_MATRIX") or DEFAULT_MATRIX)
    name = Path(binary).name
    dirs = [root / f"qemu-{version}"]
    if "." not in version:
        dirs += sorted(root.glob(f"qemu-{version}.*"), reverse=True)
    for d in dirs:
        if (d / "bin" / name).is_file():
            return str(d / "bin" / name)
    raise TargetError(
        f"QEMU {version} with {name} is not provided under {root}: "
        "run scripts/qemu-matrix (or set QMIRROR_QEMU_MATRIX)"
    )
