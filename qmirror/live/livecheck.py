"""Checking live VMs: read each target, check it, and keep what happened. Thin asyncio shell.

:func:`check_targets` reads several targets at once (one task each in an
:class:`asyncio.TaskGroup`, each with its own deadline) and checks each reading with the
pure :func:`qmirror.verify.check.check`. A failing target does not disturb the others: its
:class:`Outcome` carries the error instead of a result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qmirror.errors import QmirrorError
from qmirror.live.snapshot import Snapshot
from qmirror.live.targets import DEFAULT_TIMEOUT, Target, open_snapshot
from qmirror.verify.check import CheckResult, check


__all__ = ["Outcome", "check_target", "check_targets"]


@dataclass(slots=True)
class Outcome:
    """What happened to one target."""

    target: Target
    snapshot: Snapshot | None = None
    result: CheckResult | None = None
    error: str | None = None
    fetch_seconds: float = 0.0
    check_seconds: float = 0.0

    @property
    def verdict(self) -> str:
        if self.result is None:
            return "error"
        return self.result.comparison.result

    def inputs(self) -> dict[str, str]:
        return {
            "tree": f"{self.target.label}: info mtree -o -D",
            "flat": f"{self.target.label}: info mtree -f -o",
        }


async def check_target(
    target: Target,
    *,
    pause: bool = False,
    timeout: float = DEFAULT_TIMEOUT,  # the target's own deadline
    boot: float | None = None,
    accel: str = "auto",
    strict: bool = False,
    rules: bool = True,
) -> Outcome:
    """Read one target and check it; trouble becomes :attr:`Outcome.error`, never raised.

    :param pause: stop a running VM for the reading (see :func:`open_snapshot`).
    :param timeout: seconds for reading this target (``boot`` comes on top).
    :param boot: for a ``launch`` target: let the guest run this long first.
    :param accel: see :func:`qmirror.verify.check.check`.
    """
    started = time.perf_counter()
    try:
        snap = await open_snapshot(
            target, pause=pause, timeout=timeout, boot=boot if target.kind == "launch" else None
        )
    except QmirrorError as exc:
        return Outcome(target, error=str(exc), fetch_seconds=time.perf_counter() - started)
    fetched = time.perf_counter()
    outcome = Outcome(target, snap, fetch_seconds=fetched - started)
    try:
        version = snap.info["qemu_version"] if snap.info is not None else None
        outcome.result = check(
            snap.tree,
            snap.flat,
            accel=accel,
            strict=strict,
            rules=rules,
            tree_name=outcome.inputs()["tree"],
            flat_name=outcome.inputs()["flat"],
            qemu_version=".".join(version.split(".")[:2]) if version else None,
        )
    except QmirrorError as exc:
        outcome.error = str(exc)
    outcome.check_seconds = time.perf_counter() - fetched
    return outcome


async def check_targets(targets: Sequence[Target], **options: Any) -> list[Outcome]:
    """Check every target concurrently, each with its own timeout; results in the order
    of *targets*. Keyword options are those of :func:`check_target`."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(check_target(t, **options)) for t in targets]
    return [t.result() for t in tasks]
