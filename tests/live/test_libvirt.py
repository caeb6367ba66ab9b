"""libvirt:DOMAIN targets against a real libvirtd and a transient TCG domain.

The fixture starts ``virtlogd -d`` and ``libvirtd -d`` when they are not running (and
stops them again); every domain is destroyed in teardown and its QEMU checked gone.
Expectations come from QEMU through an independent path (``virsh
qemu-monitor-command``) or from libvirt's own state.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from libvirthelpers import running_libvirtd, transient_domain
from livehelpers import QmirrorProcess, run_qmirror

from qmirror.errors import CommandRefused, ConnectError
from qmirror.live.libvirt import LibvirtMonitor
from qmirror.live.snapshot import load


libvirt = pytest.importorskip("libvirt", reason="libvirt-python not installed (qmirror[libvirt])")

pytestmark = pytest.mark.qemu

QEMU = os.environ.get("QMIRROR_QEMU", "/usr/bin/qemu-system-x86_64")


@pytest.fixture(scope="module")
def uri() -> Iterator[str]:
    with running_libvirtd() as u:
        yield u


@pytest.fixture(scope="module")
def conn(uri: str) -> Iterator[Any]:
    c = libvirt.open(uri)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def dom(conn: Any) -> Iterator[Any]:
    """A paused domain shared by the read-only tests (nothing here changes it)."""
    with transient_domain(conn, QEMU) as d:
        yield d


@pytest.fixture
def own_dom(conn: Any) -> Iterator[Any]:
    """A paused domain of the test's own (it is resumed, suspended or destroyed)."""
    with transient_domain(conn, QEMU) as d:
        yield d


def virsh_hmp(uri: str, name: str, command: str) -> str:
    """QEMU's answer through virsh: independent of qmirror's code."""
    out = subprocess.run(
        ["virsh", "-c", uri, "qemu-monitor-command", name, "--hmp", command],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return out.replace("\r\n", "\n").rstrip("\n") + "\n"


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------- reading


async def test_check_by_name_and_by_uuid(uri: str, dom: Any) -> None:
    for spec in (f"libvirt:{dom.name()}", f"libvirt:{dom.UUIDString()}"):
        run = await run_qmirror("check", "--connect", uri, spec, "--format", "json")
        assert run.code == 0, run.err
        doc = json.loads(run.out)
        assert doc["result"] == "match"
        assert doc["target"] == {
            "label": spec,
            "kind": "libvirt",
            "uri": uri,
            "domain": spec.removeprefix("libvirt:"),
        }


async def test_snapshot_is_qemus_own_text(uri: str, dom: Any, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    run = await run_qmirror(
        "snapshot", f"libvirt:{dom.name()}", "--connect", uri, "--out", str(out)
    )
    assert run.code == 0, run.err
    snap = load(str(out))
    assert snap.info is not None and snap.info["accelerator"] == "tcg"
    # The domain is paused: QEMU answers the same through virsh.
    flat = virsh_hmp(uri, dom.name(), "info mtree -f -o")
    # (virsh adds a line end of its own, and trims: compare up to trailing blank lines.)
    assert snap.flat.replace("\r\n", "\n").rstrip("\n") + "\n" == flat
    tree = virsh_hmp(uri, dom.name(), "info mtree -o -D")
    assert snap.tree.replace("\r\n", "\n").rstrip("\n") + "\n" == tree
    # What the README warns about: libvirt logs the passthrough as a taint.
    log = await asyncio.to_thread(Path(f"/var/log/libvirt/qemu/{dom.name()}.log").read_text)
    assert "is tainted: custom-monitor" in log


@pytest.mark.parametrize("by", ["name", "uuid"])
async def test_tree_names_the_machine(uri: str, dom: Any, by: str) -> None:
    spec = f"libvirt:{dom.name() if by == 'name' else dom.UUIDString()}"
    run = await run_qmirror("tree", spec, "--connect", uri)
    assert run.code == 0, run.err
    first = run.out.splitlines()[0]
    assert first.startswith(f"{spec} (pc-i440fx-")
    # Every address space QEMU lists appears in the tree (those sharing a root on one
    # line, comma-separated).
    text = virsh_hmp(uri, dom.name(), "info mtree")
    spaces = {ln.split(": ", 1)[1] for ln in text.splitlines() if ln.startswith("address-space: ")}
    shown = {
        name
        for ln in run.out.splitlines()
        if "address-space: " in ln
        for name in ln.split("address-space: ", 1)[1].split(", ")
    }
    assert spaces and shown == spaces


async def test_targets_file_with_libvirt_lines(uri: str, dom: Any, tmp_path: Path) -> None:
    listing = tmp_path / "targets"
    listing.write_text(
        f"# two ways to name one domain\nlibvirt:{dom.name()}\nlibvirt:{dom.UUIDString()}\n"
    )
    run = await run_qmirror(
        "check", "--connect", uri, "--targets-file", str(listing), "--format", "json"
    )
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert [t["result"] for t in doc["targets"]] == ["match", "match"]


async def test_map_and_ram_map(uri: str, dom: Any, tmp_path: Path) -> None:
    svg = tmp_path / "map.svg"
    run = await run_qmirror("map", f"libvirt:{dom.name()}", "--connect", uri, "--svg", str(svg))
    assert run.code == 0, run.err
    assert (await asyncio.to_thread(svg.read_text)).lstrip().startswith(("<svg", "<?xml"))
    run = await run_qmirror("ram-map", f"libvirt:{dom.name()}", "--connect", uri, "--format", "csv")
    assert run.code == 0, run.err
    rows = list(csv.DictReader(io.StringIO(run.out)))
    # QEMU's own RAMBlock table (through virsh) gives pc.ram's length: the domain's 32 MiB.
    blocks = virsh_hmp(uri, dom.name(), "info ramblock")
    line = next(ln for ln in blocks.splitlines() if ln.split()[:1] == ["pc.ram"])
    used = int(line.split()[4], 16)  # name, page size (2 words), offset, used, total
    assert used == 32 << 20
    ram = [r for r in rows if r["block"] == "pc.ram" and "memory" in r["address_spaces"]]
    assert ram and int(ram[0]["start"], 16) == 0
    assert max(int(r["block_offset"], 16) + int(r["size"], 16) for r in ram) == used


# --------------------------------------------------------------- allow-list


async def test_allow_list_refuses_before_sending(
    uri: str, dom: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import libvirt_qemu  # noqa: PLC0415

    sent: list[str] = []
    real = libvirt_qemu.qemuMonitorCommand

    def spy(d: Any, cmd: str, flags: int) -> str:
        sent.append(cmd)
        result: str = real(d, cmd, flags)
        return result

    monkeypatch.setattr(libvirt_qemu, "qemuMonitorCommand", spy)
    async with LibvirtMonitor(uri=uri) as mon:
        await mon.connect(dom.name())
        status, _ = await mon.run_state()
        assert status == "prelaunch"
        assert sent == ['{"execute": "query-status"}']
        sent.clear()
        with pytest.raises(CommandRefused):
            await mon.execute("cont")
        with pytest.raises(CommandRefused):
            await mon.hmp("system_reset")
        with pytest.raises(CommandRefused):
            await mon.hmp("info mtree\nq")
        assert sent == []
    # libvirt's view agrees: still paused, nothing ran.
    state, _ = dom.state()
    assert state == libvirt.VIR_DOMAIN_PAUSED


# -------------------------------------------------------------------- faults


async def test_missing_domain_is_one_line_exit_2(uri: str) -> None:
    for command in ("snapshot", "tree", "watch"):
        extra = ["--out", "/nonexistent/x"] if command == "snapshot" else []
        run = await run_qmirror(command, "libvirt:no-such-domain-qm", "--connect", uri, *extra)
        assert run.code == 2, (command, run.out, run.err)
        line = one_line_error(run.err)
        assert "no domain with matching name 'no-such-domain-qm'" in line


async def test_bad_uri_and_daemon_down_are_one_line_exit_2(uri: str, dom: Any) -> None:
    run = await run_qmirror("tree", f"libvirt:{dom.name()}", "--connect", "nosuch:///x")
    assert run.code == 2
    assert "no connection driver available for nosuch:///x" in one_line_error(run.err)
    # A libvirtd that is not there (a socket nobody listens on), via the environment.
    env_uri = "qemu:///system?socket=/nonexistent/libvirt-sock"
    os.environ["LIBVIRT_DEFAULT_URI"] = env_uri
    try:
        run = await run_qmirror("snapshot", f"libvirt:{dom.name()}", "--out", "/tmp/unused-qm")
    finally:
        del os.environ["LIBVIRT_DEFAULT_URI"]
    assert run.code == 2
    line = one_line_error(run.err)
    assert "Failed to connect socket to '/nonexistent/libvirt-sock'" in line
    assert env_uri in line


async def test_read_only_connection_is_one_line_exit_2(uri: str, dom: Any) -> None:
    ro = "qemu:///system?socket=/run/libvirt/libvirt-sock-ro"
    run = await run_qmirror("tree", f"libvirt:{dom.name()}", "--connect", ro)
    assert run.code == 2
    assert "read only access prevents virDomainQemuMonitorCommand" in one_line_error(run.err)


async def test_connect_error_names_the_domain_state(uri: str, own_dom: Any) -> None:
    name = own_dom.name()
    own_dom.destroy()
    with pytest.raises(ConnectError, match="Domain not found"):
        async with LibvirtMonitor(uri=uri) as mon:
            await mon.connect(name, timeout=10)


# --------------------------------------------------------------------- watch


def watch_jsonl(*args: str) -> QmirrorProcess:
    """``qmirror watch --format jsonl --no-nop ARGS``, its records read as they come."""
    return QmirrorProcess("watch", "--format", "jsonl", "--no-nop", *args)


async def test_watch_reads_on_a_lifecycle_event(uri: str, own_dom: Any) -> None:
    """With polls an hour apart, only a libvirt event can cause the second reading."""
    async with watch_jsonl(
        f"libvirt:{own_dom.name()}", "--connect", uri, "--interval", "3600", "--count", "2"
    ) as w:
        start = await w.until("start")
        assert start["metadata"]["status"] == "prelaunch"
        await asyncio.to_thread(own_dom.resume)
        fin = await w.finish()
    assert fin.code == 0, fin.err
    end = w.records[-1]
    assert end["event"] == "end" and end["reason"] == "count" and end["readings"] == 2
    assert end["trigger"] == "event:RESUME"


async def test_monitor_feeds_suspend_and_resume(uri: str, own_dom: Any) -> None:
    async with LibvirtMonitor(uri=uri) as mon:
        await mon.connect(own_dom.UUIDString())
        with mon.events({"STOP", "RESUME"}) as feed:
            await asyncio.to_thread(own_dom.resume)
            async with asyncio.timeout(30):
                first = await feed.get()
            await asyncio.to_thread(own_dom.suspend)
            async with asyncio.timeout(30):
                second = await feed.get()
    got = [(e.name, json.loads(json.dumps(e.data))["libvirt"]["event"]) for e in (first, second)]
    assert got == [("RESUME", "lifecycle:RESUMED"), ("STOP", "lifecycle:SUSPENDED")]


async def test_watch_reports_a_destroyed_domain_as_gone(uri: str, own_dom: Any) -> None:
    async with watch_jsonl(
        f"libvirt:{own_dom.name()}", "--connect", uri, "--interval", "3600"
    ) as w:
        await w.until("start")
        await asyncio.to_thread(own_dom.destroy)
        fin = await w.finish()
    assert fin.code == 2
    assert "QEMU went away" in one_line_error(fin.err)
    errors = [r for r in w.records if r["event"] == "error"]
    assert errors and errors[-1]["kind"] == "gone" and errors[-1]["fatal"]
    assert w.records[-1]["reason"] == "gone"


async def test_watch_reads_on_a_device_added_event(uri: str, conn: Any) -> None:
    """QEMU 7.2 has no DEVICE_ADDED event; libvirt has one, and it triggers a reading.
    (q35: its PCIe root ports take a hot-plugged device while the VM is paused.)"""
    rng = "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
    with transient_domain(conn, QEMU, machine="q35") as dom:
        async with watch_jsonl(
            f"libvirt:{dom.name()}", "--connect", uri, "--interval", "3600", "--count", "2"
        ) as w:
            await w.until("start")
            await asyncio.to_thread(dom.attachDeviceFlags, rng, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            fin = await w.finish()
        assert fin.code == 0, fin.err
        end = w.records[-1]
        assert (end["reason"], end["readings"], end["trigger"]) == (
            "count",
            2,
            "event:DEVICE_ADDED",
        )
        # libvirt's own record of the device agrees that it is there now.
        assert "<rng model='virtio'>" in dom.XMLDesc(0)
