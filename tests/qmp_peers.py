"""QMP peers on real UNIX sockets, for fault and protocol tests.

* :class:`SilentServer` accepts connections and never says a word (a busy monitor).
* :class:`FakeQmp` speaks just enough QMP for ``describe()`` and answers
  ``human-monitor-command`` with whatever text the test chose (garbage HMP replies).
* :class:`BrokenQmp` greets and answers like :class:`FakeQmp` until the first
  ``human-monitor-command``, then breaks the protocol (invalid JSON, an endless line).
* :class:`RecordingProxy` sits between qmirror and a real QEMU's QMP socket, forwards
  everything unchanged, records every command qmirror sends, and can act on one
  before forwarding it (e.g. kill QEMU mid-read, or change its memory map).

None of them imitates QEMU's memory map: the map always comes from a real QEMU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


_DECODER = json.JSONDecoder()


def _split_json(buf: str) -> tuple[list[dict[str, Any]], str]:
    """Complete JSON objects at the front of *buf*, and what is left over."""
    out: list[dict[str, Any]] = []
    while True:
        rest = buf.lstrip()
        if not rest:
            return out, ""
        try:
            obj, end = _DECODER.raw_decode(rest)
        except json.JSONDecodeError:
            return out, rest
        out.append(obj)
        buf = rest[end:]


class _Server:
    """A UNIX socket server that closes every connection it accepted on exit."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()  # the peer's end of the socket goes when its session does
            self._tasks.discard(task)

    async def __aenter__(self) -> _Server:
        self._server = await asyncio.start_unix_server(self._serve, self.path)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._server.wait_closed()


class SilentServer(_Server):
    """Accepts and says nothing: what a monitor that already has a client looks like."""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up


class FakeQmp(_Server):
    """Greets, answers the queries ``describe()`` sends, and answers every other
    ``human-monitor-command`` with :attr:`hmp_reply`."""

    def __init__(self, path: Path, hmp_reply: str, flat_reply: str | None = None) -> None:
        super().__init__(path)
        self.hmp_reply = hmp_reply
        #: The answer to ``info mtree -f ...`` (default: :attr:`hmp_reply`).
        self.flat_reply = hmp_reply if flat_reply is None else flat_reply
        self.commands: list[str] = []

    def _answer(self, msg: dict[str, Any]) -> object:
        cmd = msg.get("execute")
        args = msg.get("arguments") or {}
        if cmd == "query-version":
            return {"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": "fake"}
        if cmd == "query-target":
            return {"arch": "x86_64"}
        if cmd == "query-kvm":
            return {"enabled": False, "present": False}
        if cmd == "query-status":
            return {"status": "paused", "running": False, "singlestep": False}
        if cmd == "human-monitor-command":
            line = args.get("command-line", "")
            if line.startswith("info qom-tree"):
                return "/machine (pc-i440fx-7.2-machine)\r\n"
            if line.startswith("info mtree -f"):
                return self.flat_reply
            return self.hmp_reply
        return {}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        greeting = {
            "QMP": {
                "version": {"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": "fake"},
                "capabilities": [],
            }
        }
        writer.write(json.dumps(greeting).encode() + b"\r\n")
        buf = ""
        while chunk := await reader.read(65536):
            msgs, buf = _split_json(buf + chunk.decode())
            for msg in msgs:
                self.commands.append(str(msg.get("execute")))
                if not await self._reply(msg, reader, writer):
                    return
            await writer.drain()

    async def _reply(
        self, msg: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one message; ``False`` ends the session."""
        reply: dict[str, object] = {"return": self._answer(msg)}
        if "id" in msg:
            reply["id"] = msg["id"]
        writer.write(json.dumps(reply).encode() + b"\r\n")
        return True


class BrokenQmp(FakeQmp):
    """A :class:`FakeQmp` that breaks the protocol on its first HMP command.

    :param how: ``"invalid-json"`` (a reply line that is not JSON) or ``"endless"``
        (reply bytes without a line end, 64 KiB at a time, until the client hangs up).
    """

    def __init__(self, path: Path, how: str) -> None:
        if how not in ("invalid-json", "endless"):
            raise ValueError(how)
        super().__init__(path, "")
        self.how = how
        #: Bytes of the endless line written before the client hung up.
        self.endless_bytes = 0

    async def _reply(
        self, msg: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if msg.get("execute") != "human-monitor-command":
            return await super()._reply(msg, reader, writer)
        if self.how == "invalid-json":
            writer.write(b'{"return": "address-space: memory\\r\\n", "id": }\r\n')
            await writer.drain()
            await reader.read()  # keep the socket open: the client must notice
        else:
            block = b"x" * 65536
            while True:
                writer.write(block)
                await writer.drain()
                self.endless_bytes += len(block)
        return False


class RecordingProxy(_Server):
    """Forwards a QMP session to *upstream* and records what the client sends.

    :param on_command: called with each decoded client message before it is forwarded
        (it may, for instance, kill QEMU).
    :param before_forward: awaited with each decoded client message before it is
        forwarded (it may, for instance, change the VM through another monitor).
    """

    def __init__(
        self,
        path: Path,
        upstream: str,
        on_command: Callable[[dict[str, Any]], None] | None = None,
        before_forward: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(path)
        self.upstream = upstream
        self.on_command = on_command
        self.before_forward = before_forward
        #: Every message the client sent, decoded, in order.
        self.sent: list[dict[str, Any]] = []

    @property
    def commands(self) -> list[str]:
        """Command names, with HMP command lines spelled out (``hmp:info mtree``)."""
        out = []
        for m in self.sent:
            name = str(m.get("execute"))
            if name == "human-monitor-command":
                name = "hmp:" + str((m.get("arguments") or {}).get("command-line"))
            out.append(name)
        return out

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        self._writers.append(up_writer)

        async def downstream() -> None:
            try:
                while chunk := await up_reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            finally:
                writer.close()  # QEMU hung up (EOF or reset): so do we

        back = asyncio.create_task(downstream())
        try:
            buf = ""
            while chunk := await reader.read(65536):
                msgs, buf = _split_json(buf + chunk.decode())
                for msg in msgs:
                    self.sent.append(msg)
                    if self.on_command is not None:
                        self.on_command(msg)
                    if self.before_forward is not None:
                        await self.before_forward(msg)
                up_writer.write(chunk)
                await up_writer.drain()
        finally:
            # Either side hanging up ends the session for both, as it would without us.
            up_writer.close()
            writer.close()
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await back
