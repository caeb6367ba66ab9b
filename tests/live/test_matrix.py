"""Every QEMU version users run, live: 5.2, 7.2, 10.0 and 11.x.

``scripts/qemu-matrix`` provides the versions other than the system's under
``$QMIRROR_QEMU_MATRIX`` (default ``/var/cache/qmirror``). Each test here runs once per
version: launch and check (rules alone, then the CLI), byte-exact round trips, dialect
detection on the real output, snapshot, watch, and KVM slots against QEMU's own trace.

A version missing from the matrix is a failure when ``QMIRROR_REQUIRE_LIVE=1`` (CI sets
it), a skip with the reason otherwise. Known failures are ``xfail(strict=True)`` with
their cause, so a fix shows up as an XPASS failure.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from livehelpers import assert_gone, pids_with, run_qmirror

from qmirror.errors import LaunchError, QmirrorError
from qmirror.live.launcher import QemuInstance, kvm_problem, qemu_error_line
from qmirror.live.snapshot import load
from qmirror.live.targets import DEFAULT_MATRIX, matrix_binary
from qmirror.sim.kvm import final_slots, predict_slots
from qmirror.text.dialect import for_version
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.kvmtrace import parse_trace
from qmirror.text.tree import parse_tree_document, print_like
from qmirror.verify.check import check, load_tree


pytestmark = pytest.mark.qemu

#: The versions CI proves live; "11" is whichever 11.x Debian sid ships.
VERSIONS = ("5.2", "7.2", "10.0", "11")

MACHINES = [
    ("x86_64", ("-machine", "pc")),
    ("x86_64", ("-machine", "q35")),
    ("x86_64", ("-machine", "isapc")),
    ("x86_64", ("-machine", "microvm")),
    ("aarch64", ("-machine", "virt")),
    ("arm", ("-machine", "vexpress-a9")),
]


def matrix_qemu(version: str, arch: str = "x86_64") -> str:
    """The wrapper of QEMU *version* for *arch*; fail (CI) or skip when it is missing."""
    try:
        return matrix_binary(version, f"qemu-system-{arch}")
    except QmirrorError as exc:
        root = os.environ.get("QMIRROR_QEMU_MATRIX") or DEFAULT_MATRIX
        reason = f"QEMU {version} ({arch}) not in the matrix at {root}: {exc}"
        if os.environ.get("QMIRROR_REQUIRE_LIVE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def series(reported: str) -> str:
    """``"11.1.3"`` -> ``"11.1"``."""
    return ".".join(reported.split(".")[:2])


def is_version(reported: str, wanted: str) -> bool:
    return series(reported) == wanted or series(reported).startswith(wanted + ".")


# ------------------------------------------------------------- one VM, four texts


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("arch", "args"), MACHINES, ids=[f"{a}-{m[1]}" for a, m in MACHINES])
async def test_live_texts_check_with_rules_alone_and_round_trip(
    version: str, arch: str, args: tuple[str, ...]
) -> None:
    binary = matrix_qemu(version, arch)
    async with QemuInstance(args, binary=binary, paused=True) as vm:
        info = await vm.monitor.describe()
        texts = [
            await vm.monitor.info_mtree(**flags)
            for flags in (
                {},
                {"owners": True, "disabled": True},
                {"flatview": True},
                {"flatview": True, "owners": True},
            )
        ]
        pid = vm.pid
    assert_gone(pid)
    assert is_version(info["qemu_version"], version), info["qemu_version"]
    truth = for_version(info["qemu_version"])
    tree, tree_od, flat, flat_o = texts
    for t, f in ((tree, flat), (tree_od, flat_o)):
        result = check(t, f, strict=True)
        assert result.ok, [
            (v.address_spaces, v.status, v.diffs[:2]) for v in result.comparison.views if not v.ok
        ]
        loaded = load_tree(t)
        assert print_like(loaded.machine, loaded.document) == t
        assert print_flat(parse_flat(f)) == f
        # The dialect found from the text alone is this version's, unless the text
        # carries no evidence that tells them apart.
        detected = parse_tree_document(t).detection
        assert detected.dialect == truth or not detected.evidence, (str(detected), truth)


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("version", VERSIONS)
async def test_cli_check_launch_names_the_version_and_leaves_nothing(version: str) -> None:
    binary = matrix_qemu(version)
    marker = f"qmirror-matrix-{uuid.uuid4().hex[:12]}"
    run = await run_qmirror(
        "check", "--launch", "--", binary, "-machine", "q35", "-name", marker, timeout=120
    )
    assert run.code == 0, run.err + run.out
    first = run.out.splitlines()[0]
    assert first.startswith(f"MATCH launch:{binary} -machine q35"), first
    assert f"(QEMU {version}." in first, first
    assert pids_with(marker) == []


@pytest.mark.parametrize("version", VERSIONS)
async def test_cli_qemu_version_option_picks_the_matrix_qemu(version: str) -> None:
    matrix_qemu(version)
    marker = f"qmirror-matrix-{uuid.uuid4().hex[:12]}"
    run = await run_qmirror(
        "check",
        "--qemu-version",
        version,
        "--launch",
        "--",
        "-machine",
        "pc",
        "-name",
        marker,
        timeout=120,
    )
    assert run.code == 0, run.err + run.out
    first = run.out.splitlines()[0]
    assert f"(QEMU {version}." in first and "pc-i440fx-" in first, first
    assert pids_with(marker) == []


async def test_cli_qemu_version_not_in_the_matrix_is_trouble() -> None:
    run = await run_qmirror("check", "--qemu-version", "1.4", "--launch", "--", "-machine", "pc")
    assert run.code == 2
    assert "QEMU 1.4 with qemu-system-x86_64 is not provided" in run.err
    assert "Traceback" not in run.err


@pytest.mark.parametrize("version", VERSIONS)
async def test_cli_snapshot_then_offline_check_states_the_version(
    version: str, short_tmp: Path
) -> None:
    binary = matrix_qemu(version)
    out = short_tmp / "snap"
    run = await run_qmirror(
        "snapshot", "--out", str(out), "--launch", "--", binary, "-machine", "q35", timeout=120
    )
    assert run.code == 0, run.err
    meta = json.loads((out / "meta.json").read_text())
    assert is_version(meta["qemu_version"], version), meta["qemu_version"]
    snap = load(out)
    assert print_flat(parse_flat(snap.flat)) == snap.flat
    loaded = load_tree(snap.tree)
    assert print_like(loaded.machine, loaded.document) == snap.tree
    again = await run_qmirror("check", str(out))
    assert again.code == 0, again.err + again.out
    assert f"(QEMU {meta['qemu_version']}," in again.out.splitlines()[0], again.out


@pytest.mark.parametrize("version", VERSIONS)
async def test_cli_watch_launch_validates_each_reading(version: str) -> None:
    binary = matrix_qemu(version)
    run = await run_qmirror(
        "watch",
        "--count",
        "2",
        "--interval",
        "0.3",
        "--format",
        "jsonl",
        "--launch",
        "--",
        binary,
        "-machine",
        "pc",
        "-nic",
        "none",
        timeout=120,
    )
    assert run.code == 0, run.err
    records = [json.loads(line) for line in run.out.splitlines()]
    assert records[0]["event"] == "start"
    assert is_version(records[0]["metadata"]["qemu_version"], version), records[0]
    validations = [r for r in records if r["event"] == "validation"]
    assert validations and all(r["result"] == "match" for r in validations)
    assert records[-1]["event"] == "end" and records[-1]["reason"] == "count"


# --------------------------------------------------------------------------- KVM


@pytest.mark.kvm
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("machine", ["pc", "q35,smm=off"])
async def test_kvm_slot_table_is_qemus(version: str, machine: str, tmp_path: Path) -> None:
    problem = kvm_problem()
    if problem is not None:
        pytest.skip(f"KVM not usable: {problem}")
    binary = matrix_qemu(version)
    log = tmp_path / "trace.log"
    async with QemuInstance(
        ["-machine", machine, "-accel", "kvm", "-trace", "kvm_set_user_memory", "-D", str(log)],
        binary=binary,
    ) as vm:
        model = load_tree(await vm.monitor.info_mtree(owners=True, disabled=True)).machine
        events = parse_trace(log.read_text(), filename=str(log))
    qemu = final_slots(events)
    assert len(qemu) >= 5
    assert sorted(s.key for s in predict_slots(model)) == sorted(s.key for s in qemu)


# ------------------------------------------------------------------ the monitor option


@pytest.mark.parametrize("version", VERSIONS)
async def test_monitor_option_draws_no_warning(version: str) -> None:
    """QEMU 11 deprecates ``-mon``: the launcher uses ``-object monitor-qmp`` where it exists."""
    binary = matrix_qemu(version)
    async with QemuInstance(["-machine", "pc"], binary=binary, paused=True) as vm:
        info = await vm.monitor.describe()
        pid = vm.pid
        argv = vm.command_line
    assert_gone(pid)
    log = vm.log_text()
    assert "warning" not in log, log
    uses_object = "-object" in argv and "-mon" not in argv
    # monitor-qmp as an object type came with QEMU 11.
    assert uses_object == (int(series(info["qemu_version"]).split(".")[0]) >= 11), argv


@pytest.mark.parametrize("version", VERSIONS)
async def test_launch_failure_names_qemus_error_not_a_warning(version: str) -> None:
    """A board that needs a kernel: QEMU's reason is its last non-warning line."""
    binary = matrix_qemu(version, "arm")
    with pytest.raises(LaunchError) as info:
        async with QemuInstance(["-machine", "sx1"], binary=binary, paused=True):
            pytest.fail("sx1 should not start without a kernel")
    said = qemu_error_line(info.value.log)
    assert said is not None and said.endswith("Kernel or Flash image must be specified"), said
    assert "deprecated" not in info.value.log, info.value.log
