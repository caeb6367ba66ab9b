"""A real libvirtd for tests: started if it is not running (and stopped again), and
transient TCG domains that are always destroyed."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


SOCKET = "/run/libvirt/libvirt-sock"
URI = "qemu:///system"
_DAEMONS = (
    ("virtlogd", "/run/virtlogd.pid", "/run/libvirt/virtlogd-sock"),
    ("libvirtd", "/run/libvirtd.pid", SOCKET),
)


def _accepting(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
        return True


def _wait_socket(path: str, timeout: float = 30.0) -> None:
    """Wait for a daemon's socket to accept connections (the daemon's own readiness
    signal: it listens only once it is ready)."""
    deadline = time.monotonic() + timeout
    while not _accepting(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not accept connections within {timeout:g}s")
        time.sleep(0.02)  # no notification to wait on: the daemon forked away


def _pid(pidfile: str) -> int | None:
    try:
        pid = int(Path(pidfile).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _stop(pid: int, timeout: float = 30.0) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_libvirtd() -> Iterator[str]:
    """Yield the URI of a running libvirtd; start ``virtlogd -d`` and ``libvirtd -d`` if
    needed (as root), and stop by pid what was started here."""
    if os.geteuid() != 0:
        pytest.skip("libvirt tests start libvirtd and need root")
    started: list[int] = []
    try:
        for name, pidfile, sock in _DAEMONS:
            if _accepting(sock):
                continue
            binary = f"/usr/sbin/{name}"
            if not Path(binary).exists():
                pytest.fail(f"{binary} missing: install Debian's libvirt-daemon-system")
            subprocess.run([binary, "-d"], check=True, timeout=30)
            _wait_socket(sock)
            pid = _pid(pidfile)
            assert pid is not None, f"{name} started but {pidfile} names no live process"
            started.append(pid)
        yield URI
    finally:
        for pid in reversed(started):
            _stop(pid)


def domain_xml(name: str, qemu: str, machine: str = "pc") -> str:
    """A small TCG domain with no disk (libvirt adds its default controllers)."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid.uuid4()}</uuid>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='{machine}'>hvm</type></os>
  <devices><emulator>{qemu}</emulator></devices>
</domain>"""


def qemu_pid(name: str) -> int | None:
    return _pid(f"/run/libvirt/qemu/{name}.pid")


@contextlib.contextmanager
def transient_domain(
    conn: Any, qemu: str, *, paused: bool = True, machine: str = "pc"
) -> Iterator[Any]:
    """A transient domain, started paused (like ``-S``), destroyed afterwards whatever
    happens, and its QEMU checked to be gone."""
    import libvirt  # noqa: PLC0415

    name = f"qmtest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    flags = libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
    dom = conn.createXML(domain_xml(name, qemu, machine), flags)
    pid = qemu_pid(name)
    try:
        yield dom
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        if pid is not None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"QEMU {pid} of domain {name} outlived destroy")
