"""Tests for qmirror.live.qmp: the allow-list, HMP error detection, timeouts, real QEMU replies."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qmirror.errors import CommandFailed, CommandRefused, ConnectError, MonitorTimeout
from qmirror.live.launcher import QemuInstance
from qmirror.live.qmp import Monitor, check_command, hmp_error_text, info_mtree_command


# ----------------------------------------------------------------- fake peer


class FakeQmpPeer:
    """The far end of a socketpair, speaking just enough QMP to test the client side.

    It greets, accepts ``qmp_capabilities``, answers every later command with an empty
    return, and keeps every byte it received after negotiation.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        #: Raw bytes received after capabilities negotiation.
        self.raw = bytearray()
        #: Commands received after capabilities negotiation, decoded.
        self.commands: list[str] = []

    async def __aenter__(self) -> FakeQmpPeer:
        self._task = asyncio.create_task(self._serve())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.wait((self._task,), timeout=5)
        if self._writer is not None:
            self._writer.close()

    async def _serve(self) -> None:
        reader, writer = await asyncio.open_connection(sock=self._sock)
        self._writer = writer
        greeting = {
            "QMP": {
                "version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "fake"},
                "capabilities": [],
            }
        }
        writer.write(json.dumps(greeting).encode() + b"\r\n")
        negotiated = False
        buf = ""
        decoder = json.JSONDecoder()
        # qemu.qmp sends bare JSON objects, not lines (QEMU's parser is streaming).
        while chunk := await reader.read(4096):
            if negotiated:
                self.raw += chunk
            buf += chunk.decode()
            while buf.strip():
                try:
                    msg, end = decoder.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break  # incomplete: wait for more
                buf = buf.lstrip()[end:]
                if negotiated:
                    self.commands.append(msg["execute"])
                negotiated = negotiated or msg["execute"] == "qmp_capabilities"
                reply: dict[str, object] = {"return": {}}
                if "id" in msg:
                    reply["id"] = msg["id"]
                writer.write(json.dumps(reply).encode() + b"\r\n")
                await writer.drain()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[Monitor, FakeQmpPeer]]:
    """A read-only Monitor connected to a :class:`FakeQmpPeer`."""
    ours, theirs = socket.socketpair()
    async with FakeQmpPeer(theirs) as peer, Monitor() as mon:
        await mon.connect(ours, timeout=5)
        yield mon, peer


# --------------------------------------------------------------- allow-list

READ_ONLY_HMP = [
    "info mtree",
    "info mtree -f -o",
    "  info status",
    "\tinfo\tversion",
    "info",
    "info qom-tree /machine",
]
CONTROL_HMP = [
    "stop",
    "cont",
    "q",
    "quit",
    "system_reset",
    "o /b 0x80 0x1",
    "i /b 0x80",
    "device_del nic0",
    "information",
    "infomtree",
    "info/x mtree",
    "INFO mtree",
    "",
    "   ",
    "info mtree\nquit",
    "info mtree\r\nstop",
    "info status\x00",
    "info\x0bstatus",
]
CONTROL_QMP = [
    "stop",
    "cont",
    "quit",
    "system_reset",
    "device_add",
    "device_del",
    "object-add",
    "qom-set",
    "migrate",
    "x-exit-preconfig",
]


@pytest.mark.parametrize("line", READ_ONLY_HMP)
def test_info_is_allowed(line: str) -> None:
    check_command("human-monitor-command", {"command-line": line}, allow_control=False)


@pytest.mark.parametrize("cmd", ["qmp_capabilities", "query-status", "query-version"])
def test_queries_are_allowed(cmd: str) -> None:
    check_command(cmd, None, allow_control=False)


@pytest.mark.parametrize("line", CONTROL_HMP)
def test_non_info_hmp_is_refused(line: str) -> None:
    with pytest.raises(CommandRefused):
        check_command("human-monitor-command", {"command-line": line}, allow_control=False)
    check_command("human-monitor-command", {"command-line": line}, allow_control=True)


@pytest.mark.parametrize("cmd", CONTROL_QMP)
def test_control_qmp_is_refused(cmd: str) -> None:
    with pytest.raises(CommandRefused, match="allow-list"):
        check_command(cmd, None, allow_control=False)
    check_command(cmd, None, allow_control=True)


async def test_refused_before_anything_is_sent(fake: tuple[Monitor, FakeQmpPeer]) -> None:
    mon, peer = fake
    for cmd in CONTROL_QMP:
        with pytest.raises(CommandRefused):
            await mon.execute(cmd)
    for line in CONTROL_HMP:
        with pytest.raises(CommandRefused):
            await mon.hmp(line)
    with pytest.raises(CommandRefused):
        await mon.quit()
    # A round trip after the refusals: anything they had sent would have arrived first.
    await mon.execute("query-status")
    assert peer.commands == ["query-status"]
    assert b"stop" not in peer.raw and b"quit" not in peer.raw


async def test_refused_even_when_not_connected() -> None:
    with pytest.raises(CommandRefused):
        await Monitor().execute("stop")


async def test_allowed_commands_reach_the_peer(fake: tuple[Monitor, FakeQmpPeer]) -> None:
    mon, peer = fake
    await mon.execute("query-kvm")
    await mon.execute("human-monitor-command", {"command-line": " info mtree"})
    assert peer.commands == ["query-kvm", "human-monitor-command"]


# ------------------------------------------------------------ HMP text rules


def test_info_mtree_flags_in_qemu_order() -> None:
    assert info_mtree_command() == "info mtree"
    assert info_mtree_command(disabled=True, owners=True) == "info mtree -o -D"
    assert info_mtree_command(flatview=True, owners=True) == "info mtree -f -o"
    assert (
        info_mtree_command(flatview=True, dispatch=True, owners=True, disabled=True)
        == "info mtree -f -d -o -D"
    )


@pytest.mark.parametrize(
    "text",
    [
        "unknown command: 'info nosuch'\r\n",
        'mtree: unsupported option -x\r\nTry "help info mtree" for more information\r\n',
        "invalid char in format: 'l'\r\nTry \"help x\" for more information\r\n",
        "mtree: extraneous characters at the end of line\r\n"
        'Try "help info mtree" for more information\r\n',
        "Error: Device 'nosuch' not found\r\n",
    ],
)
def test_hmp_error_text_detected(text: str) -> None:
    assert hmp_error_text(text)


@pytest.mark.parametrize(
    "text", ["", "VM status: paused (prelaunch)\r\n", 'FlatView #0\r\n AS "I/O"\r\n']
)
def test_hmp_normal_text_passes(text: str) -> None:
    assert not hmp_error_text(text)


# ---------------------------------------------------------------- connecting


async def test_missing_greeting_times_out_with_hint(tmp_path: Path) -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept_and_stay_silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        held.append(writer)

    path = str(tmp_path / "silent.sock")
    server = await asyncio.start_unix_server(accept_and_stay_silent, path)
    try:
        start = time.monotonic()
        with pytest.raises(ConnectError, match=r"no QMP greeting within 0\.3s: monitor busy"):
            await Monitor().connect(path, timeout=0.3)
        assert time.monotonic() - start < 3
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_connect_failure_is_chained(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="cannot connect") as info:
        await Monitor().connect(str(tmp_path / "nothing-here.sock"), timeout=2)
    assert isinstance(info.value.__cause__, FileNotFoundError)


async def test_peer_hanging_up_before_greeting() -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    with pytest.raises(ConnectError, match="closed the connection"):
        await Monitor().connect(ours, timeout=2)


# ------------------------------------------------------------ against QEMU


@pytest.fixture(scope="module")
async def qemu_ro(
    qemu_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[QemuInstance, str]]:
    """A paused ``pc`` with a second, plain QMP socket for read-only monitors."""
    path = str(tmp_path_factory.mktemp("qmp") / "ro.sock")
    args = ["-machine", "pc", "-qmp", f"unix:{path},server=on,wait=off"]
    async with QemuInstance(args, binary=qemu_binary) as vm:
        yield vm, path


@pytest.fixture
async def ro_monitor(qemu_ro: tuple[QemuInstance, str]) -> AsyncIterator[Monitor]:
    async with Monitor(command_timeout=10) as mon:
        await mon.connect(qemu_ro[1], timeout=5)
        yield mon


@pytest.mark.qemu
async def test_real_info_mtree_keeps_crlf(ro_monitor: Monitor) -> None:
    text = await ro_monitor.info_mtree()
    assert text.startswith(("address-space: ", "memory-region: "))
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert text.endswith("\r\n")


@pytest.mark.qemu
async def test_real_info_mtree_all_flag_combinations(ro_monitor: Monitor) -> None:
    for f, d, o, dd in itertools.product((False, True), repeat=4):
        text = await ro_monitor.info_mtree(flatview=f, dispatch=d, owners=o, disabled=dd)
        assert text.startswith("FlatView #") == f


@pytest.mark.qemu
async def test_real_hmp_errors_raise(ro_monitor: Monitor) -> None:
    with pytest.raises(CommandFailed, match="unsupported option -x"):
        await ro_monitor.hmp("info mtree -x")
    with pytest.raises(CommandFailed, match="unknown command"):
        await ro_monitor.hmp("info nosuch")
    with pytest.raises(CommandFailed) as info:
        await ro_monitor.execute("query-nosuch")
    assert info.value.error_class == "CommandNotFound"


@pytest.mark.qemu
async def test_real_refusal_leaves_vm_alone(ro_monitor: Monitor) -> None:
    with pytest.raises(CommandRefused):
        await ro_monitor.execute("cont")
    with pytest.raises(CommandRefused):
        await ro_monitor.hmp("cont")
    status = await ro_monitor.execute("query-status")
    assert isinstance(status, dict) and status["running"] is False


@pytest.mark.qemu
async def test_real_describe(ro_monitor: Monitor) -> None:
    info = await ro_monitor.describe()
    assert info["machine"].startswith("pc-i440fx-")
    assert info["machine_qom_type"] == info["machine"] + "-machine"
    assert info["arch"] == "x86_64" and info["accelerator"] == "tcg"
    assert info["status"] == "prelaunch" and not info["running"]
    assert info["qemu_version"] == "{}.{}.{}".format(*info["qemu_version_tuple"])


@pytest.mark.qemu
async def test_real_timeout_then_usable(qemu_ro: tuple[QemuInstance, str]) -> None:
    vm, _ = qemu_ro
    assert vm.pid is not None
    os.kill(vm.pid, signal.SIGSTOP)
    try:
        with pytest.raises(MonitorTimeout, match="info status"):
            await vm.monitor.hmp("info status", timeout=0.3)
    finally:
        os.kill(vm.pid, signal.SIGCONT)
    assert "paused" in await vm.monitor.hmp("info status")
