"""Shared fixtures: which QEMU to run, and skipping what this host cannot do."""

from __future__ import annotations

import os
import shutil

import pytest

from qmirror.launcher import DEFAULT_BINARY, kvm_problem


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
        pytest.skip(f"{binary} not found (set QMIRROR_QEMU to a qemu-system-x86_64)")
    return binary


@pytest.fixture
def kvm() -> None:
    """Skip the requesting test, with the reason, unless ``-accel kvm`` can work here."""
    problem = kvm_problem()
    if problem is not None:
        pytest.skip(f"KVM not usable: {problem}")
