"""A thin, read-only-by-default asyncio monitor on top of qemu.qmp's :class:`QMPClient`.

What this layer adds to the plain client:

* a timeout on every await (connecting, the greeting, each command);
* the read-only allow-list (:func:`qmirror.live.allowlist.check_command`), checked in
  exactly one place (:meth:`Monitor._send`) before anything leaves the process; control
  commands need ``allow_control=True``;
* HMP error detection: ``human-monitor-command`` reports HMP errors as ordinary reply
  text, so the text is inspected and turned into :class:`~qmirror.errors.CommandFailed`;
* errors mapped onto :mod:`qmirror.errors`, chained with ``from``;
* quiet ``qemu.qmp`` logging per connection unless asked for (no logger level changed);
* bounded event feeds (:meth:`Monitor.events`): qemu.qmp's listeners keep every event
  forever (queue and history), so its default all-events listener is switched off and
  :class:`EventFeed` keeps at most a fixed number of pending events and no history.

HMP text is returned byte for byte as QEMU sent it, CR LF line endings included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Iterable, Iterator
from typing import Final, TypeAlias, TypedDict, TypeVar

from qemu.qmp import ConnectError as QMPConnectError
from qemu.qmp import (
    ExecInterruptedError,
    ExecuteError,
    Message,
    QMPClient,
    QMPError,
    Runstate,
    StateError,
)
from qemu.qmp.error import ProtocolError

from qmirror.errors import (
    CommandFailed,
    ConnectError,
    MonitorError,
    MonitorTimeout,
)
from qmirror.live.allowlist import HMP as _HMP
from qmirror.live.allowlist import check_command
from qmirror.live.events import DEFAULT_EVENT_BACKLOG, EventFeed, QmpEvent


__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "Address",
    "EventFeed",
    "MachineInfo",
    "Monitor",
    "QmpEvent",
    "check_command",
    "hmp_error_text",
    "info_mtree_command",
]

#: Seconds allowed for connecting and the QMP greeting/negotiation together.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: Seconds allowed for one command's reply, unless the caller says otherwise.
DEFAULT_COMMAND_TIMEOUT: Final = 30.0
#: Same cap as libvirt and qemu.qmp: one reply may be up to 10 MiB.
DEFAULT_READ_LIMIT: Final = 10 * 1024 * 1024

#: Where a monitor lives: a UNIX socket path, a ``(host, port)`` TCP address, or an
#: already connected socket (for instance one end of a socketpair).
Address: TypeAlias = str | tuple[str, int] | socket.socket

#: Not registered with :mod:`logging` (no ``getLogger``): silences one client only.
_SILENT: Final = logging.Logger("qmirror.qmp.silent", logging.CRITICAL + 1)
_SILENT.propagate = False

_T = TypeVar("_T")

# How HMP reports failure in its reply text (monitor/hmp.c and hmp_handle_error):
# an unknown command, an argument parse error followed by a hint, or "Error: ...".
_HMP_UNKNOWN = re.compile(r"\Aunknown command: ")
_HMP_TRY_HELP = re.compile(r'\ATry "help [^"]*" for more information\Z')
_HMP_ERROR_PREFIX = re.compile(r"\AError: ")

_TREE_HEADS: Final = ("address-space:", "memory-region:")
_FLAT_HEAD: Final = "FlatView #"

_QOM_MACHINE_LINE = re.compile(r"\A/machine \(([^)\r\n]+)\)\r?$", re.MULTILINE)


class MachineInfo(TypedDict):
    """What :meth:`Monitor.describe` reports about the QEMU at the other end."""

    #: ``"major.minor.micro"`` from ``query-version``, e.g. ``"7.2.22"``.
    qemu_version: str
    #: ``(major, minor, micro)``.
    qemu_version_tuple: tuple[int, int, int]
    #: The distribution's package string, e.g. ``"Debian 1:7.2+dfsg-7+deb12u18+b3"``.
    qemu_package: str
    #: Target architecture from ``query-target``, e.g. ``"x86_64"``.
    arch: str
    #: Versioned machine type in use, e.g. ``"pc-q35-7.2"``.
    machine: str
    #: The machine's QOM type, e.g. ``"pc-q35-7.2-machine"``.
    machine_qom_type: str
    #: ``"kvm"`` or ``"tcg"``.
    accelerator: str
    #: ``query-kvm``: ``present``.
    kvm_present: bool
    #: ``query-status``: ``status``, e.g. ``"prelaunch"``, ``"paused"``, ``"running"``.
    status: str
    #: ``query-status``: ``running``.
    running: bool


def info_mtree_command(
    *,
    flatview: bool = False,
    dispatch: bool = False,
    owners: bool = False,
    disabled: bool = False,
) -> str:
    """Build an ``info mtree`` command line.

    HMP accepts the flags only in the order of its argument spec (``-f -d -o -D``); any
    other order is rejected, so they are always emitted in that order.

    :param flatview: ``-f``, print FlatViews instead of the region tree.
    :param dispatch: ``-d``, add the dispatch tree (only meaningful with ``-f``).
    :param owners: ``-o``, add region owners.
    :param disabled: ``-D``, include disabled regions (ignored by QEMU with ``-f``).
    :return: e.g. ``"info mtree -f -o"``.
    """
    words = ["info", "mtree"]
    for wanted, flag in ((flatview, "-f"), (dispatch, "-d"), (owners, "-o"), (disabled, "-D")):
        if wanted:
            words.append(flag)
    return " ".join(words)


def hmp_error_text(text: str) -> bool:
    """Tell whether an HMP reply is one of HMP's error messages.

    :param text: the reply exactly as received.
    :return: ``True`` for ``unknown command: ...``, argument errors (which end with
        ``Try "help ..." for more information``) and ``Error: ...``.
    """
    if _HMP_UNKNOWN.match(text) or _HMP_ERROR_PREFIX.match(text):
        return True
    # An argument error always ends with the hint line.
    lines = text.rstrip("\r\n").splitlines()
    return bool(lines) and _HMP_TRY_HELP.match(lines[-1]) is not None


def _member(obj: object, key: str, kind: type[_T]) -> _T:
    """``obj[key]``, checked to be a dict member of type *kind* (for QMP replies)."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected an object holding {key!r}, got {obj!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise TypeError(f"{key!r} is {value!r}, expected {kind.__name__}")
    return value


def _describe_address(address: Address) -> str:
    if isinstance(address, socket.socket):
        return f"socket fd {address.fileno()}"
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return address


async def _open_socket(address: str | tuple[str, int]) -> socket.socket:
    """Connect a non-blocking socket to a UNIX path or a TCP ``(host, port)``.

    Done here rather than inside qemu.qmp so that a slow transport can be told apart
    from a missing greeting.
    """
    loop = asyncio.get_running_loop()
    candidates: list[tuple[int, int, int, str | tuple[object, ...]]]
    if isinstance(address, str):
        candidates = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, address)]
    else:
        host, port = address
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        candidates = [(family, kind, proto, addr) for family, kind, proto, _, addr in infos]
    last: OSError | None = None
    for family, kind, proto, addr in candidates:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise last if last is not None else OSError(f"no address found for {address!r}")


def _hear_nothing(_event: Message) -> bool:
    return False


class Monitor:
    """A QMP monitor connection that refuses anything but reads unless told otherwise.

    Use as ``async with Monitor() as mon: await mon.connect(...)`` or call
    :meth:`close` yourself.

    :param allow_control: permit control commands (``stop``, ``cont``, ``quit``, HMP
        port I/O, ...). Only for a QEMU we own, or an explicit user request.
    :param command_timeout: default seconds to wait for each command's reply.
    :param debug: let this connection log through ``qemu.qmp``'s loggers (configured
        by the application, as usual); otherwise its client logs nowhere. No logger
        of the process is touched either way.
    :param name: label for qemu.qmp's logger and ``repr``.
    :param read_limit: largest reply accepted, in bytes.
    """

    def __init__(
        self,
        *,
        allow_control: bool = False,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        debug: bool = False,
        name: str = "qmirror",
        read_limit: int = DEFAULT_READ_LIMIT,
    ) -> None:
        self._allow_control = allow_control
        self.command_timeout = command_timeout
        self._name = name
        self._read_limit = read_limit
        self._client: QMPClient | None = None
        self._where = "(not connected)"
        self._quit_sent = False
        # Set once a lost connection has been reported, so close() does not repeat it.
        self._loss_reported = False
        self._debug = debug

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        mode = "control" if self._allow_control else "read-only"
        return f"<Monitor {self._name} {mode} {state} {self._where}>"

    async def __aenter__(self) -> Monitor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(expect_eof=exc_info[0] is not None)

    # ------------------------------------------------------------------ state

    @property
    def allow_control(self) -> bool:
        """Whether control commands may be sent."""
        return self._allow_control

    @property
    def connected(self) -> bool:
        """Whether a QMP session is up (``False`` once QEMU has hung up)."""
        return self._client is not None and self._client.runstate == Runstate.RUNNING

    # ---------------------------------------------------------------- connect

    async def connect(
        self,
        address: Address,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,  # split per phase below
    ) -> None:
        """Connect, wait for the greeting and negotiate capabilities.

        A socket passed in is owned by the monitor from then on and is closed by
        :meth:`close` (or right away if connecting fails).

        :param address: UNIX socket path, ``(host, port)``, or a connected socket.
        :param timeout: seconds for the whole handshake.
        :raise ConnectError: on any failure, including a missing greeting.
        """
        if self._client is not None:
            raise ConnectError(f"monitor is already connected to {self._where}")
        where = _describe_address(address)
        client = QMPClient(self._name, readbuflen=self._read_limit)
        if not self._debug:
            # qemu.qmp logs through the instance's logger: a detached silent one quiets
            # this client without changing a logger level of the process.
            client.logger = _SILENT
        phase = "connect"
        sock = address if isinstance(address, socket.socket) else None
        try:
            async with asyncio.timeout(timeout):
                if sock is None:
                    assert not isinstance(address, socket.socket)
                    sock = await _open_socket(address)
                phase = "greeting"
                await client.connect(sock)
        except BaseException as exc:
            # The socket is ours now, whatever went wrong (closing twice is harmless).
            if sock is not None:
                sock.close()
            if isinstance(exc, TimeoutError):
                if phase == "connect":
                    msg = f"cannot connect to {where} within {timeout:g}s"
                elif client.greeting is None:
                    msg = (
                        f"no QMP greeting within {timeout:g}s: monitor busy (another client "
                        f"attached) or not a QMP socket? ({where})"
                    )
                else:
                    msg = f"QMP negotiation did not finish within {timeout:g}s ({where})"
                raise ConnectError(msg) from exc
            if isinstance(exc, QMPConnectError):
                cause = exc.exc
                if isinstance(cause, EOFError):
                    msg = f"{where} closed the connection before QMP was ready"
                else:
                    msg = f"no usable QMP session on {where}: {type(cause).__name__}: {cause}"
                raise ConnectError(msg) from exc
            if isinstance(exc, OSError):
                raise ConnectError(f"cannot connect to {where}: {exc.strerror or exc}") from exc
            # Cancellation, KeyboardInterrupt, bugs: never wrapped.
            raise
        # The client's default listener hears every event and forgets none; nothing
        # here reads it, so make it hear nothing (feeds from events() are bounded).
        client.events.event_filter = _hear_nothing
        self._client = client
        self._where = where
        self._quit_sent = False
        self._loss_reported = False

    # ----------------------------------------------------------------- sending

    async def _send(
        self,
        cmd: str,
        args: dict[str, object] | None = None,
        *,
        timeout: float | None = None,  # becomes MonitorTimeout
    ) -> object:
        """Every command goes through here: allow-list, timeout and error mapping."""
        check_command(cmd, args, allow_control=self._allow_control)
        # Name HMP commands by their command line in messages: more useful to a reader.
        what = str((args or {}).get("command-line", cmd)) if cmd == _HMP else cmd
        client = self._client
        if client is None:
            raise MonitorError(f"cannot send {what}: monitor is not connected")
        if client.runstate != Runstate.RUNNING:
            if cmd == "quit":
                return None  # already gone: what quit wanted
            self._loss_reported = True
            raise MonitorError(f"QEMU went away (connection closed) before {what}")
        limit = self.command_timeout if timeout is None else timeout
        if cmd == "quit":
            self._quit_sent = True
        try:
            async with asyncio.timeout(limit):
                return await client.execute(cmd, args)
        except TimeoutError as exc:
            msg = f"no reply to {what} within {limit:g}s from {self._where}"
            raise MonitorTimeout(msg) from exc
        except ExecuteError as exc:
            raise CommandFailed(what, str(exc), error_class=exc.error_class) from exc
        except (ExecInterruptedError, StateError) as exc:
            if cmd == "quit":
                # QEMU may hang up before its reply to quit is read: that is success.
                return None
            self._loss_reported = True
            why = await self._why_lost(client)
            if why is not None:
                raise MonitorError(f"{why} during {what}") from exc
            raise MonitorError(f"QEMU went away (connection closed) during {what}") from exc
        except QMPError as exc:
            raise MonitorError(f"{what}: QMP protocol error: {exc}") from exc

    async def _why_lost(self, client: QMPClient) -> str | None:
        """Why qemu.qmp's reader stopped, if not because QEMU hung up.

        qemu.qmp only says "Disconnected" to the command that was waiting; the reader's
        own failure (a reply that is not JSON, a line over the read limit) comes out of
        ``disconnect()``, and it is the one worth showing.
        """
        try:
            async with asyncio.timeout(2.0):
                await client.disconnect()
        except OSError:  # EOF-like hang-ups, resets, and TimeoutError (an OSError)
            return None
        except EOFError:
            return None
        except ProtocolError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
            return f"QMP protocol error: {first}{cause}"[:300]
        except (ValueError, asyncio.LimitOverrunError):
            # asyncio's readline: no line end within the limit.
            return f"a QMP reply longer than {self._read_limit} bytes"
        except Exception as exc:  # anything else that stopped the reader, named
            return f"QMP session failed: {exc!r}"[:300]
        return None

    async def execute(
        self,
        cmd: str,
        args: dict[str, object] | None = None,
        *,
        timeout: float | None = None,
    ) -> object:
        """Run a QMP command and return its ``return`` value.

        :param cmd: command name, e.g. ``"query-status"``.
        :param args: its arguments, if any.
        :param timeout: seconds to wait; default :attr:`command_timeout`.
        :raise CommandRefused: the command is not allowed (nothing was sent).
        :raise CommandFailed: QEMU answered with an error (``error_class`` set).
        :raise MonitorTimeout: no reply in time.
        :raise MonitorError: the connection is gone.
        """
        return await self._send(cmd, args, timeout=timeout)

    async def hmp(
        self,
        command_line: str,
        *,
        timeout: float | None = None,
    ) -> str:
        """Run an HMP command through ``human-monitor-command``.

        :param command_line: e.g. ``"info mtree -f"``.
        :param timeout: seconds to wait; default :attr:`command_timeout`.
        :return: the reply text exactly as QEMU sent it (CR LF line endings).
        :raise CommandFailed: the reply is an HMP error message.
        """
        reply = await self._send(_HMP, {"command-line": command_line}, timeout=timeout)
        if not isinstance(reply, str):
            raise CommandFailed(command_line, f"unexpected {type(reply).__name__} reply: {reply!r}")
        if hmp_error_text(reply):
            raise CommandFailed(command_line, reply.strip())
        return reply

    async def info_mtree(
        self,
        *,
        flatview: bool = False,
        dispatch: bool = False,
        owners: bool = False,
        disabled: bool = False,
        timeout: float | None = None,
    ) -> str:
        """Run ``info mtree`` with the given flags and check the reply looks right.

        :return: the raw text (CR LF kept).
        :raise CommandFailed: the reply is not a tree (``address-space:`` /
            ``memory-region:``) or, with ``flatview``, does not start with ``FlatView #``.
        """
        command_line = info_mtree_command(
            flatview=flatview, dispatch=dispatch, owners=owners, disabled=disabled
        )
        text = await self.hmp(command_line, timeout=timeout)
        heads = (_FLAT_HEAD,) if flatview else _TREE_HEADS
        if not text.startswith(heads):
            shown = text if len(text) <= 500 else text[:500] + "..."
            raise CommandFailed(
                command_line, f"reply does not start with {' or '.join(heads)!s}: {shown!r}"
            )
        return text

    async def quit(self, *, timeout: float | None = None) -> None:
        """Ask QEMU to exit (needs ``allow_control``); a hang-up counts as success."""
        await self._send("quit", timeout=timeout)

    # ----------------------------------------------------------------- events

    @contextlib.contextmanager
    def events(
        self,
        names: Iterable[str] | None = None,
        *,
        backlog: int = DEFAULT_EVENT_BACKLOG,
        wakeup: asyncio.Event | None = None,
    ) -> Iterator[EventFeed]:
        """Hear QMP events while the block runs::

            with mon.events({"RESET", "DEVICE_DELETED"}) as feed:
                async with asyncio.timeout(5):
                    event = await feed.get()

        Each event is a :class:`QmpEvent`: its name, QEMU's ``timestamp``
        (``{"seconds": ..., "microseconds": ...}``) and ``data``.

        :param names: event names (``None``: every event).
        :param backlog: pending events kept; older ones are dropped and counted.
        :param wakeup: set whenever an event arrives.
        :raise MonitorError: the monitor is not connected.
        """
        client = self._client
        if client is None:
            raise MonitorError("cannot listen for events: monitor is not connected")
        feed = EventFeed(names, backlog=backlog, wakeup=wakeup)
        with client.listen(feed.listener):
            yield feed

    async def wait_closed(self) -> None:
        """Return once the QMP session is over (QEMU hung up, or :meth:`close`).

        Meant to be raced against other work and cancelled by its owner: it has no
        deadline of its own.
        """
        client = self._client
        while client is not None and client.runstate == Runstate.RUNNING:
            await client.runstate_changed()
            client = self._client

    # --------------------------------------------------------------- metadata

    async def run_state(self, *, timeout: float | None = None) -> tuple[str, bool]:
        """``query-status``: the run state (``"running"``, ``"paused"``, ``"prelaunch"``,
        ...) and whether the guest is running.

        :raise CommandFailed: the reply has an unexpected shape.
        """
        status = await self._send("query-status", timeout=timeout)
        try:
            return _member(status, "status", str), _member(status, "running", bool)
        except (KeyError, TypeError) as exc:
            raise CommandFailed("query-status", f"unexpected reply: {exc}") from exc

    async def describe(self, *, timeout: float | None = None) -> MachineInfo:
        """Collect what identifies the QEMU and machine at the other end.

        The machine type comes from the QOM type of ``/machine`` (read through the
        read-only ``info qom-tree /machine``): QEMU 7.2's ``query-current-machine`` does
        not name it, and ``query-machines`` does not mark the one in use.

        :raise CommandFailed: a reply has an unexpected shape.
        """
        version = await self._send("query-version", timeout=timeout)
        target = await self._send("query-target", timeout=timeout)
        kvm = await self._send("query-kvm", timeout=timeout)
        status = await self._send("query-status", timeout=timeout)
        qom = await self.hmp("info qom-tree /machine", timeout=timeout)
        try:
            numbers = _member(version, "qemu", dict)
            triple = (
                _member(numbers, "major", int),
                _member(numbers, "minor", int),
                _member(numbers, "micro", int),
            )
            package = _member(version, "package", str).strip()
            arch = _member(target, "arch", str)
            kvm_enabled = _member(kvm, "enabled", bool)
            kvm_present = _member(kvm, "present", bool)
            state = _member(status, "status", str)
            running = _member(status, "running", bool)
        except (KeyError, TypeError) as exc:
            raise CommandFailed("describe", f"unexpected query reply: {exc}") from exc
        match = _QOM_MACHINE_LINE.search(qom)
        if match is None:
            raise CommandFailed("info qom-tree /machine", f"no '/machine (TYPE)' line: {qom!r}")
        qom_type = match.group(1)
        return MachineInfo(
            qemu_version="{}.{}.{}".format(*triple),
            qemu_version_tuple=triple,
            qemu_package=package,
            arch=arch,
            machine=qom_type.removesuffix("-machine"),
            machine_qom_type=qom_type,
            accelerator="kvm" if kvm_enabled else "tcg",
            kvm_present=kvm_present,
            status=state,
            running=running,
        )

    # ------------------------------------------------------------------ close

    async def close(
        self,
        *,
        timeout: float = 5.0,
        expect_eof: bool = False,
    ) -> None:
        """Disconnect. Safe to call twice, and on a monitor that never connected.

        A hang-up by QEMU is tolerated after our own ``quit``, after the loss was already
        reported by a command, or when *expect_eof* is set (e.g. QEMU was killed on
        purpose).

        :raise MonitorError: QEMU hung up unexpectedly, or disconnecting timed out.
        """
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await client.disconnect()
        except TimeoutError as exc:
            msg = f"disconnecting from {self._where} took over {timeout:g}s"
            raise MonitorTimeout(msg) from exc
        except (EOFError, OSError) as exc:
            if self._quit_sent or self._loss_reported or expect_eof:
                return
            raise MonitorError(f"QEMU went away (connection closed) on {self._where}") from exc
        except Exception as exc:
            # Whatever killed qemu.qmp's reader (a protocol error, an over-long reply).
            if expect_eof:
                return
            raise MonitorError(f"QMP session on {self._where} failed: {exc!r}") from exc
