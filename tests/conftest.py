"""Shared fixtures: which QEMU to run, and skipping what this host cannot do."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from livehelpers import REQUIRE_LIVE, LaunchVM, LiveVM, assert_gone, live_required, skip_live

from qmirror.live.launcher import DEFAULT_BINARY, QemuInstance, kvm_problem


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say up front whether KVM tests will run, and whether live skips are failures."""
    problem = kvm_problem()
    return [
        f"kvm: {'usable' if problem is None else f'not usable ({problem}): kvm tests skip'}",
        f"{REQUIRE_LIVE}: {'on: other live skips fail' if live_required() else 'off'}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.kvm`` tests, with the reason, when /dev/kvm is not usable."""
    problem = kvm_problem()
    if problem is None:
        return
    skip = pytest.mark.skip(reason=f"KVM not usable: {problem}")
    for item in items:
        if "kvm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def qemu_binary() -> str:
    """The x86_64 system emulator to test with (``$QMIRROR_QEMU`` overrides it)."""
    binary = os.environ.get("QMIRROR_QEMU", DEFAULT_BINARY)
    if shutil.which(binary) is None:
        skip_live(f"{binary} not found (set QMIRROR_QEMU to a qemu-system-x86_64)")
    return binary


@pytest.fixture
def kvm() -> None:
    """Skip the requesting test, with the reason, unless ``-accel kvm`` can work here."""
    problem = kvm_problem()
    if problem is not None:
        pytest.skip(f"KVM not usable: {problem}")


# -- live VMs ---------------------------------------------------------------------


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private directory with a short path (UNIX socket paths must fit 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="qm-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def launch_vm(qemu_binary: str, short_tmp: Path) -> AsyncIterator[LaunchVM]:
    """Start QEMUs (paused unless ``paused=False``) that are all shut down, and checked
    to be gone, when the test ends however it ends."""
    stack = contextlib.AsyncExitStack()
    pids: list[int] = []

    async def start(*args: str, paused: bool = True) -> LiveVM:
        path = short_tmp / f"vm{len(pids)}.qmp"
        vm = QemuInstance(
            [*args, "-qmp", f"unix:{path},server=on,wait=off"], binary=qemu_binary, paused=paused
        )
        await stack.enter_async_context(vm)
        assert vm.pid is not None
        pids.append(vm.pid)
        return LiveVM(vm, str(path))

    try:
        yield start
    finally:
        await stack.aclose()
        for pid in pids:
            assert_gone(pid)
