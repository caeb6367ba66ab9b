"""Live ``check`` and ``snapshot`` against real QEMUs: results, CLI, concurrency, faults.

Every expectation comes from QEMU itself: its own ``info mtree -f`` is what our rendering
must equal, and the texts it sent are what our printers must reproduce byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from livehelpers import LaunchVM, assert_gone, pids_with, run_main, run_qmirror, wait_for
from qmp_peers import FakeQmp, RecordingProxy, SilentServer

from qmirror.core.modeljson import machine_from_json
from qmirror.errors import QmirrorError
from qmirror.live.livecheck import Outcome, check_targets
from qmirror.live.snapshot import load
from qmirror.live.targets import Target, open_snapshot
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.tree import parse_tree_document, print_tree
from qmirror.verify.check import check, load_tree


pytestmark = pytest.mark.qemu


def assert_round_trips(tree: str, flat: str) -> None:
    """Our printers give back QEMU's texts byte for byte."""
    doc = parse_tree_document(tree)
    machine = load_tree(tree, rules=False).machine
    assert print_tree(machine, owners=doc.owners, disabled=doc.shows_disabled, eol=doc.eol) == tree
    assert print_flat(parse_flat(flat)) == flat


def assert_matches(o: Outcome) -> None:
    assert o.error is None, o.error
    assert o.result is not None and o.snapshot is not None
    bad = [(v.address_spaces, v.status, v.diffs[:3]) for v in o.result.comparison.views if not v.ok]
    assert not bad, f"{o.target.label}: {bad}"


# ------------------------------------------------------------------ results


#: QEMU's ``-f`` line of the BIOS shadowed in RAM (pc and q35 alike, SeaBIOS in QEMU 7.2).
SHADOWED_BIOS = re.compile(
    r"^  00000000000f0000-00000000000fffff \(prio \d+, rom\): "
    r"pc\.ram @00000000000f0000\b",
    re.M,
)


async def check_and_recapture(boot: float | None) -> list[Outcome]:
    """pc and q35, launched by qmirror, checked concurrently with rules only (strict)."""
    targets = [
        Target.launch(["-machine", m], binary=os.environ.get("QMIRROR_QEMU", "qemu-system-x86_64"))
        for m in ("pc", "q35")
    ]
    outcomes = await check_targets(targets, boot=boot, strict=True)
    for o in outcomes:
        assert_matches(o)
        assert o.snapshot is not None
        # Inference on top of the rules must not change the verdict either.
        assert check(o.snapshot.tree, o.snapshot.flat).ok
        assert_round_trips(o.snapshot.tree, o.snapshot.flat)
    return outcomes


async def test_live_check_paused_pc_and_q35(qemu_binary: str) -> None:
    outcomes = await check_and_recapture(boot=None)
    for o in outcomes:
        assert o.snapshot is not None and o.snapshot.info is not None
        assert o.snapshot.info["status"] == "prelaunch"
        assert o.snapshot.boot_seconds is None and o.snapshot.tries == 1
        assert not SHADOWED_BIOS.search(o.snapshot.flat)  # no firmware has run yet


@pytest.mark.slow
async def test_live_check_after_seabios_boot(qemu_binary: str) -> None:
    outcomes = await check_and_recapture(boot=3.0)
    for o in outcomes:
        snap = o.snapshot
        assert snap is not None and snap.info is not None
        assert snap.boot_seconds is not None and snap.boot_seconds >= 3.0
        assert snap.info["status"] == "paused"
        # SeaBIOS has run: it shadowed the BIOS into RAM and made PAM map that RAM
        # read-only at 0xf0000 (before, the BIOS ROM is there: see the paused test).
        assert SHADOWED_BIOS.search(snap.flat), snap.flat[:2000]


async def test_socket_check_reads_a_stable_map_while_the_guest_runs(launch_vm: LaunchVM) -> None:
    vm = await launch_vm("-machine", "q35", paused=False)
    o = (await check_targets([Target.unix(vm.socket)]))[0]
    assert_matches(o)
    assert o.snapshot is not None and o.snapshot.info is not None
    assert o.snapshot.info["running"] and not o.snapshot.paused
    assert 1 <= o.snapshot.tries <= 5


# ---------------------------------------------------------------------- CLI


async def test_cli_launch_q35_exits_0_and_leaves_nothing(qemu_binary: str) -> None:
    marker = f"qmirror-test-{uuid.uuid4().hex[:12]}"
    run = await run_qmirror(
        "check", "--launch", "--", qemu_binary, "-machine", "q35", "-name", marker, timeout=120
    )
    assert run.code == 0, run.err
    first = run.out.splitlines()[0]
    assert first.startswith(f"MATCH launch:{qemu_binary} -machine q35"), first
    assert "(QEMU 7." in first or "(QEMU " in first
    assert pids_with(marker) == []


async def test_cli_failing_launch_shows_qemus_message(qemu_binary: str) -> None:
    run = await run_qmirror("check", "--launch", "--", qemu_binary, "-device", "no-such-dev")
    assert run.code == 2
    assert "'no-such-dev' is not a valid device model name" in run.err
    assert "exit code 1" in run.err


async def test_cli_json_and_junit_per_target(launch_vm: LaunchVM, short_tmp: Path) -> None:
    a = await launch_vm("-machine", "pc")
    b = await launch_vm("-machine", "q35")
    junit = short_tmp / "junit.xml"
    run = await run_qmirror(
        "check",
        "--socket",
        a.socket,
        f"unix:{b.socket}",
        "--format",
        "json",
        "--junit-xml",
        str(junit),
    )
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert doc["result"] == "match" and len(doc["targets"]) == 2
    labels = [t["target"]["label"] for t in doc["targets"]]
    assert labels == [f"unix:{b.socket}", f"unix:{a.socket}"]  # positional first
    machines = {t["metadata"]["machine"] for t in doc["targets"]}
    assert any(m.startswith("pc-i440fx-") for m in machines)
    assert any(m.startswith("pc-q35-") for m in machines)
    for t in doc["targets"]:
        assert t["result"] == "match" and t["flatviews"] and t["schema"]
        assert t["metadata"]["tries"] >= 1 and t["metadata"]["taken_at"]
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and len(root) == 2
    assert {s.get("name") for s in root} == {f"qmirror.check {lbl}" for lbl in labels}
    assert root.get("failures") == "0" and root.get("errors") == "0"


async def test_cli_one_bad_target_is_trouble_the_others_still_reported(
    launch_vm: LaunchVM, short_tmp: Path
) -> None:
    vm = await launch_vm("-machine", "pc")
    missing = short_tmp / "nobody.sock"
    run = await run_qmirror(
        "check",
        "--socket",
        vm.socket,
        "--socket",
        str(missing),
        "--format",
        "json",
        "--timeout",
        "5",
    )
    assert run.code == 2
    doc = json.loads(run.out)
    assert doc["result"] == "error"
    results = {t["target"]["label"]: t["result"] for t in doc["targets"]}
    assert results == {f"unix:{vm.socket}": "match", f"unix:{missing}": "error"}
    assert "cannot connect" in run.err


async def test_cli_snapshot_then_check_the_directory(launch_vm: LaunchVM, short_tmp: Path) -> None:
    vm = await launch_vm("-machine", "pc", "-m", "1G,slots=2,maxmem=4G")
    out = short_tmp / "snap"
    run = await run_qmirror("snapshot", vm.socket, "--out", str(out))
    assert run.code == 0, run.err
    meta = json.loads((out / "meta.json").read_text())
    for name, info in meta["files"].items():
        data = (out / name).read_bytes()
        assert len(data) == info["bytes"]
        assert hashlib.sha256(data).hexdigest() == info["sha256"]
    # Byte for byte what QEMU says (the VM is paused: nothing changed since).
    assert (out / "info-mtree-o-D.txt").read_bytes() == (
        await vm.control.info_mtree(owners=True, disabled=True)
    ).encode()
    assert (out / "info-mtree-f.txt").read_bytes() == (
        await vm.control.info_mtree(flatview=True)
    ).encode()
    snap = load(out)
    assert snap.info is not None and snap.info["machine"].startswith("pc-i440fx-")
    model = machine_from_json(json.loads((out / "model.json").read_text()))
    doc = parse_tree_document(snap.tree)
    assert print_tree(model, owners=doc.owners, disabled=doc.shows_disabled) == snap.tree
    assert meta["check"]["result"] == "match"
    again = await run_qmirror("check", str(out))
    assert again.code == 0, again.err
    refused = await run_qmirror("snapshot", vm.socket, "--out", str(out))
    assert refused.code == 2 and "not empty" in refused.err
    replaced = await run_qmirror("snapshot", vm.socket, "--out", str(out), "--force")
    assert replaced.code == 0, replaced.err


# ---------------------------------------------------------- read-only access


async def test_check_without_pause_never_sends_stop(launch_vm: LaunchVM, short_tmp: Path) -> None:
    vm = await launch_vm("-machine", "pc", paused=False)
    async with RecordingProxy(short_tmp / "proxy.sock", vm.socket) as proxy:
        assert isinstance(proxy, RecordingProxy)
        run = await run_qmirror("check", f"unix:{proxy.path}")
    assert run.code == 0, run.err
    sent = proxy.commands
    assert sent[0] == "qmp_capabilities"
    assert all(c == "qmp_capabilities" or c.startswith(("query-", "hmp:info ")) for c in sent), sent
    assert "hmp:info mtree -o -D" in sent and "hmp:info mtree -f -o" in sent
    status = await vm.control.execute("query-status")
    assert isinstance(status, dict) and status["running"] is True


async def test_pause_stops_and_resumes_only_a_running_vm(
    launch_vm: LaunchVM, short_tmp: Path
) -> None:
    running = await launch_vm("-machine", "pc", paused=False)
    async with RecordingProxy(short_tmp / "p1.sock", running.socket) as proxy:
        assert isinstance(proxy, RecordingProxy)
        run = await run_qmirror("check", "--pause", f"unix:{proxy.path}")
    assert run.code == 0, run.err
    stop, cont = proxy.commands.index("stop"), proxy.commands.index("cont")
    reads = [n for n, c in enumerate(proxy.commands) if c.startswith("hmp:info mtree")]
    assert stop < min(reads) and max(reads) < cont
    status = await running.control.execute("query-status")
    assert isinstance(status, dict) and status["running"] is True

    paused = await launch_vm("-machine", "pc")
    async with RecordingProxy(short_tmp / "p2.sock", paused.socket) as proxy2:
        assert isinstance(proxy2, RecordingProxy)
        run = await run_qmirror("check", "--pause", f"unix:{proxy2.path}")
    assert run.code == 0, run.err
    assert "stop" not in proxy2.commands and "cont" not in proxy2.commands


# -------------------------------------------------------------- concurrency


async def test_eight_vms_checked_at_once(launch_vm: LaunchVM, record_property: Any) -> None:
    machines = ["pc", "q35"] * 4
    vms = [await launch_vm("-machine", m) for m in machines]
    started = time.perf_counter()
    outcomes = await check_targets([Target.unix(vm.socket) for vm in vms])
    api_seconds = time.perf_counter() - started
    for o in outcomes:
        assert_matches(o)
    run = await run_qmirror("check", *[a for vm in vms for a in ("--socket", vm.socket)])
    assert run.code == 0, run.err
    assert run.out.splitlines()[-1] == "8 targets: 8 match, 0 mismatch, 0 error"
    record_property("eight_vms_api_seconds", round(api_seconds, 3))
    record_property("eight_vms_cli_seconds", round(run.seconds, 3))
    print(
        f"\n8 concurrent checks: {api_seconds * 1000:.0f} ms (API), "
        f"{run.seconds * 1000:.0f} ms (CLI process incl. start-up)"
    )


# ------------------------------------------------------------------- faults


async def test_qemu_killed_mid_read(
    launch_vm: LaunchVM, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vm = await launch_vm("-machine", "q35")
    killed: list[int] = []

    def kill_on_flat(msg: dict[str, Any]) -> None:
        line = (msg.get("arguments") or {}).get("command-line", "")
        if line.startswith("info mtree -f") and not killed:
            os.kill(vm.pid, signal.SIGKILL)
            killed.append(vm.pid)

    async with RecordingProxy(short_tmp / "kill.sock", vm.socket, kill_on_flat) as proxy:
        assert isinstance(proxy, RecordingProxy)
        run = await run_main(capsys, "check", f"unix:{proxy.path}", "--timeout", "20")
    assert killed, "the flat read never happened"
    assert run.code == 2
    assert "QEMU went away" in run.err or "closed the connection" in run.err, run.err
    assert run.seconds < 15
    await vm.instance.shutdown()
    assert_gone(vm.pid)


async def test_launched_qemu_killed_while_booting(qemu_binary: str) -> None:
    marker = f"qmirror-test-{uuid.uuid4().hex[:12]}"
    target = Target.launch(["-machine", "pc", "-name", marker], binary=qemu_binary)
    task = asyncio.create_task(open_snapshot(target, boot=20.0, timeout=20.0))
    await wait_for(lambda: bool(pids_with(marker)), what="QEMU to start")
    await asyncio.sleep(0.5)
    (pid,) = pids_with(marker)
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(QmirrorError, match=r"went away|exited|closed"):
        async with asyncio.timeout(30):
            await task
    assert time.monotonic() - started < 10
    assert_gone(pid)
    assert pids_with(marker) == []


async def test_monitor_that_never_greets(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SilentServer(short_tmp / "silent.sock") as server:
        run = await run_main(capsys, "check", f"unix:{server.path}", "--timeout", "2")
    assert run.code == 2
    assert "no QMP greeting within 2s" in run.err and "monitor busy" in run.err
    assert run.seconds < 10


_FLAT = (
    'FlatView #0\r\n AS "memory", root: system\r\n Root memory region: system\r\n'
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): system\r\n\r\n"
)


@pytest.mark.parametrize(
    ("tree", "flat", "expected"),
    [
        (
            "Hello, I am not QEMU\r\n",
            None,
            "info mtree -o -D: reply does not start with address-space: or memory-region:",
        ),
        (
            "address-space: memory\r\n  0000000000000000-ffffffffffffffff (prio 0, i/o): system\r\n"
            "\r\n",
            "Hello\r\n",
            "info mtree -f -o: reply does not start with FlatView #",
        ),
        (
            "address-space: memory\r\n  this is not a region line\r\n\r\n",
            _FLAT,
            "info mtree -o -D:2:",
        ),
    ],
)
async def test_garbage_hmp_reply(
    short_tmp: Path, tree: str, flat: str | None, expected: str
) -> None:
    async with FakeQmp(short_tmp / "fake.sock", tree, flat) as fake:
        run = await run_qmirror("check", f"unix:{fake.path}", "--timeout", "10")
    assert run.code == 2
    assert expected in run.err, run.err
    assert "Traceback" not in run.err
