"""Reach a libvirt-managed QEMU through libvirt's monitor passthrough.

libvirt owns the QMP socket of the QEMUs it starts; the way in is its monitor
passthrough (``virsh qemu-monitor-command``, libvirt-python's
``libvirt_qemu.qemuMonitorCommand``). :class:`LibvirtMonitor` is a
:class:`~qmirror.live.qmp.Monitor` whose commands travel that way as QMP JSON, so
everything built on a monitor (snapshots, ``check``, the mirror) works unchanged, and
every command passes the same read-only allow-list
(:func:`qmirror.live.allowlist.check_command`) before anything is sent.

libvirt marks a domain *tainted* (``custom-monitor``, logged in the domain's log) the
first time a monitor command is passed through, read-only or not.

libvirt's calls block, so each runs in a worker thread under a deadline. Its errors are
surfaced with libvirt's own message (a domain that does not exist, a libvirtd that is
down, a URI without permission); libvirt's default handler, which would print them on
stderr as well, is silenced.

**Events.** libvirt's domain events are heard through libvirt's default event loop (run
in a daemon thread) and handed to :meth:`LibvirtMonitor.events` feeds under the name of
the QMP event that means the same, so the mirror's trigger set applies as it is:

===================================  ==========================================
libvirt event                        fed as
===================================  ==========================================
lifecycle ``SUSPENDED``              ``STOP``
lifecycle ``RESUMED``                ``RESUME``
lifecycle ``PMSUSPENDED``            ``SUSPEND``
lifecycle ``STARTED`` (``WAKEUP``)   ``WAKEUP``
lifecycle ``SHUTDOWN``               ``SHUTDOWN``
lifecycle ``STOPPED``                ``SHUTDOWN``, and the domain counts as gone
device removed                       ``DEVICE_DELETED``
device added                         ``DEVICE_ADDED`` (QEMU 7.2 itself has none)
memory device size change            ``MEMORY_DEVICE_SIZE_CHANGE``
===================================  ==========================================

Each carries ``data`` with ``libvirt`` (the libvirt event and detail) and no
``timestamp``: libvirt does not pass QEMU's on. A domain that stops, or a connection
libvirt closes (libvirtd gone), ends :meth:`LibvirtMonitor.wait_closed` and makes later
commands fail with "QEMU went away", as a QMP socket that hangs up does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, TypeVar

from qemu.qmp import Message

from qmirror.errors import (
    CommandFailed,
    ConnectError,
    MonitorError,
    MonitorTimeout,
    QmirrorError,
)
from qmirror.live.allowlist import HMP, check_command
from qmirror.live.events import DEFAULT_EVENT_BACKLOG, EventFeed
from qmirror.live.options import DEFAULT_URI
from qmirror.live.qmp import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    Address,
    Monitor,
)


__all__ = ["DEFAULT_URI", "LibvirtMonitor", "default_uri"]


_UUID = re.compile(r"\A[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}\Z")
_T = TypeVar("_T")

# libvirt calls block; they get threads of their own so that a stuck libvirtd cannot
# starve asyncio's default executor (50 targets may be waiting at once).
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="libvirt")
_setup_lock = threading.Lock()
_event_loop_started = threading.Event()
_conns: dict[str, _Shared] = {}


def default_uri(uri: str | None = None) -> str:
    """*uri*, else ``$LIBVIRT_DEFAULT_URI``, else :data:`DEFAULT_URI`."""
    return uri or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


def _modules() -> tuple[Any, Any]:
    """``libvirt`` and ``libvirt_qemu``, with the event loop running (once per process)."""
    try:
        import libvirt  # noqa: PLC0415  (optional dependency: only libvirt targets need it)
        import libvirt_qemu  # noqa: PLC0415
    except ImportError as exc:
        raise QmirrorError(
            "libvirt targets need libvirt-python: pip install 'qmirror[libvirt]' "
            f"(built against Debian's libvirt-dev) ({exc})"
        ) from exc
    with _setup_lock:
        if not _event_loop_started.is_set():
            # Without this libvirt also prints every error on stderr itself.
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            # Must precede the first connection, or that one never hears events.
            libvirt.virEventRegisterDefaultImpl()
            threading.Thread(
                target=_run_events, args=(libvirt,), name="libvirt-events", daemon=True
            ).start()
            _event_loop_started.set()
    return libvirt, libvirt_qemu


def _run_events(libvirt: Any) -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def _message(exc: BaseException) -> str:
    """libvirt's own message for *exc* (one line)."""
    get = getattr(exc, "get_error_message", None)
    text = get() if callable(get) else None
    return str(text or exc).splitlines()[0] if str(text or exc) else type(exc).__name__


class _Shared:
    """One libvirt connection, shared by every monitor on the same URI.

    Domain events are registered once per connection for every domain and handed to the
    monitors of the domain by UUID: libvirt refuses a second registration of the same
    event for the same domain on one connection, and 50 domains need 4 registrations,
    not 200.
    """

    def __init__(self, uri: str, conn: Any) -> None:
        self.uri = uri
        self.conn = conn
        self.refs = 0
        self.monitors: set[LibvirtMonitor] = set()
        self.by_uuid: dict[str, set[LibvirtMonitor]] = {}
        self.callbacks: list[int] = []
        self.closed: str | None = None

    def register(self, libvirt: Any) -> None:
        """Hear every domain's events (worker thread, under the setup lock)."""
        wanted: list[tuple[str, Callable[..., None]]] = [
            ("VIR_DOMAIN_EVENT_ID_LIFECYCLE", self._lifecycle),
            ("VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED", self._device("DEVICE_DELETED")),
            ("VIR_DOMAIN_EVENT_ID_DEVICE_ADDED", self._device("DEVICE_ADDED")),
            ("VIR_DOMAIN_EVENT_ID_MEMORY_DEVICE_SIZE_CHANGE", self._memory_size),
        ]
        for const, callback in wanted:
            event_id = getattr(libvirt, const, None)
            if event_id is None:  # an older libvirt: that event does not exist there
                continue
            self.callbacks.append(self.conn.domainEventRegisterAny(None, event_id, callback, None))

    def _each(self, dom: Any) -> list[LibvirtMonitor]:
        return list(self.by_uuid.get(dom.UUIDString(), ()))

    def _lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: object) -> None:
        for mon in self._each(dom):
            mon._on_lifecycle(event, detail)

    def _device(self, name: str) -> Callable[..., None]:
        def callback(_conn: Any, dom: Any, alias: str, _opaque: object) -> None:
            for mon in self._each(dom):
                mon._emit(name, {"device": alias, "libvirt": {"event": name.lower()}})

        return callback

    def _memory_size(self, _conn: Any, dom: Any, alias: str, size: int, _opaque: object) -> None:
        for mon in self._each(dom):
            mon._emit(
                "MEMORY_DEVICE_SIZE_CHANGE",
                {
                    "id": alias,
                    "size": size * 1024,  # libvirt says KiB
                    "libvirt": {"event": "memory_device_size_change"},
                },
            )

    def on_close(self, _conn: Any, reason: int, _opaque: object) -> None:
        """libvirt's close callback (event thread): the daemon went away."""
        why = {0: "an error", 1: "end of file", 2: "keepalive timeout", 3: "a client request"}
        self.closed = f"libvirtd closed the connection to {self.uri} ({why.get(reason, reason)})"
        for mon in list(self.monitors):
            mon._lost(self.closed)


def _acquire(uri: str, mon: LibvirtMonitor) -> _Shared:
    """Open (or share) the connection to *uri*; runs in a worker thread."""
    libvirt, _ = _modules()
    with _setup_lock:
        shared = _conns.get(uri)
        if shared is None or shared.closed is not None:
            try:
                conn = libvirt.open(uri)
            except libvirt.libvirtError as exc:
                raise ConnectError(f"libvirt {uri}: {_message(exc)}") from exc
            shared = _Shared(uri, conn)
            try:
                shared.register(libvirt)
            except libvirt.libvirtError as exc:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
                raise ConnectError(f"libvirt {uri}: domain events: {_message(exc)}") from exc
            with contextlib.suppress(libvirt.libvirtError):
                # Notices a libvirtd that died within ~20 s even when nothing is sent.
                conn.setKeepAlive(5, 3)
                conn.registerCloseCallback(shared.on_close, None)
            _conns[uri] = shared
        shared.refs += 1
        shared.monitors.add(mon)
        return shared


def _release(shared: _Shared, mon: LibvirtMonitor) -> None:
    """Drop one reference; the last one closes the connection (worker thread)."""
    libvirt, _ = _modules()
    with _setup_lock:
        shared.monitors.discard(mon)
        for watchers in shared.by_uuid.values():
            watchers.discard(mon)
        shared.refs -= 1
        if shared.refs > 0:
            return
        if _conns.get(shared.uri) is shared:
            del _conns[shared.uri]
    for cb in shared.callbacks:
        with contextlib.suppress(libvirt.libvirtError):
            shared.conn.domainEventDeregisterAny(cb)
    with contextlib.suppress(libvirt.libvirtError):
        shared.conn.unregisterCloseCallback()
    with contextlib.suppress(libvirt.libvirtError):
        shared.conn.close()


def _lifecycle_name(libvirt: Any, event: int, detail: int) -> str | None:
    """The QMP event name a libvirt lifecycle event stands for (see the module doc)."""
    if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED:
        return "STOP"
    if event == libvirt.VIR_DOMAIN_EVENT_RESUMED:
        return "RESUME"
    if event == libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED:
        return "SUSPEND"
    wakeup = libvirt.VIR_DOMAIN_EVENT_STARTED_WAKEUP
    if event == libvirt.VIR_DOMAIN_EVENT_STARTED and detail == wakeup:
        return "WAKEUP"
    if event in (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, libvirt.VIR_DOMAIN_EVENT_STOPPED):
        return "SHUTDOWN"
    return None


_LIFECYCLE_WORDS: Final = (
    "DEFINED",
    "UNDEFINED",
    "STARTED",
    "SUSPENDED",
    "RESUMED",
    "STOPPED",
    "SHUTDOWN",
    "PMSUSPENDED",
    "CRASHED",
)


class LibvirtMonitor(Monitor):
    """A read-only-by-default monitor of one libvirt domain.

    ::

        async with LibvirtMonitor(uri="qemu:///system") as mon:
            await mon.connect("vm1")          # name or UUID
            text = await mon.info_mtree(flatview=True)

    :param uri: libvirt URI (default: :func:`default_uri`).
    :param allow_control: permit control commands (``stop``, ``cont``, ...).
    :param command_timeout: default seconds for each command (and each libvirt call).
    """

    def __init__(
        self,
        *,
        uri: str | None = None,
        allow_control: bool = False,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        debug: bool = False,
        name: str = "qmirror",
    ) -> None:
        super().__init__(
            allow_control=allow_control, command_timeout=command_timeout, debug=debug, name=name
        )
        self.uri = default_uri(uri)
        self._shared: _Shared | None = None
        self._dom: Any = None
        self._domain = ""
        self._gone: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = asyncio.Event()
        self._feeds: list[EventFeed] = []

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        mode = "control" if self.allow_control else "read-only"
        return f"<LibvirtMonitor {self._domain or '?'} {mode} {state} {self.uri}>"

    @property
    def connected(self) -> bool:
        """Whether the domain is reachable (``False`` once it stopped or libvirt hung up)."""
        return self._dom is not None and self._gone is None

    async def _call(self, func: Callable[..., _T], *args: Any, timeout: float, what: str) -> _T:
        """Run a blocking libvirt call in a worker thread under *timeout*."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                return await loop.run_in_executor(_POOL, func, *args)
        except TimeoutError as exc:
            raise MonitorTimeout(
                f"libvirt {self.uri}: no answer to {what} within "
                f"{timeout:g}s (libvirtd busy or stuck?)"
            ) from exc

    # ---------------------------------------------------------------- connect

    async def connect(self, address: Address, *, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        """Open the libvirt connection and find the running domain *address* (a name or a
        UUID); subscribe to its events.

        :raise ConnectError: libvirt's own message: no such domain, libvirtd down, no
            permission for the URI, a domain that is not running or not QEMU's.
        """
        if not isinstance(address, str) or not address:
            raise ConnectError(f"libvirt {self.uri}: a domain name or UUID is needed")
        if self._dom is not None:
            raise ConnectError(f"already connected to libvirt domain {self._domain!r}")
        libvirt, _ = await self._call(_modules, timeout=timeout, what="loading libvirt")
        self._loop = asyncio.get_running_loop()
        self._domain = address
        shared = await self._call(_acquire, self.uri, self, timeout=timeout, what="connecting")
        self._shared = shared
        try:
            self._dom = await self._call(
                self._find,
                libvirt,
                shared.conn,
                address,
                timeout=timeout,
                what=f"looking up {address!r}",
            )
        except BaseException:
            self._dom = None
            await asyncio.shield(
                self._call(_release, shared, self, timeout=timeout, what="closing")
            )
            self._shared = None
            raise
        self._gone = None
        self._closed.clear()

    def _find(self, libvirt: Any, conn: Any, domain: str) -> Any:
        """The running domain named *domain* (worker thread)."""
        where = f"libvirt {self.uri}"
        try:
            kind = conn.getType()
            if kind != "QEMU":
                raise ConnectError(
                    f"{where}: a {kind} connection, not QEMU's (qmirror reads QEMU's monitor)"
                )
            if _UUID.match(domain):
                try:
                    dom = conn.lookupByUUIDString(domain)
                except libvirt.libvirtError:
                    dom = conn.lookupByName(domain)  # a name that looks like a UUID
            else:
                dom = conn.lookupByName(domain)
            if not dom.isActive():
                raise ConnectError(f"{where}: domain {domain!r} is not running")
            uuid = dom.UUIDString()
        except libvirt.libvirtError as exc:
            raise ConnectError(f"{where}: {_message(exc)}") from exc
        shared = self._shared
        assert shared is not None
        with _setup_lock:
            shared.by_uuid.setdefault(uuid, set()).add(self)
        return dom

    # ----------------------------------------------------------------- events

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        """Hand an event over to the asyncio loop (called in libvirt's event thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        message = Message({"event": name, "data": data})
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._deliver, message)

    def _deliver(self, message: Message) -> None:
        for feed in list(self._feeds):
            feed.push(message)

    def _on_lifecycle(self, event: int, detail: int) -> None:
        """A lifecycle event of this domain (libvirt's event thread)."""
        libvirt, _ = _modules()
        word = _LIFECYCLE_WORDS[event] if 0 <= event < len(_LIFECYCLE_WORDS) else str(event)
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            # Before the event goes out, so the reading it triggers knows why it fails.
            self._lost(f"libvirt domain {self._domain!r} stopped")
        name = _lifecycle_name(libvirt, event, detail)
        if name is not None:
            self._emit(name, {"libvirt": {"event": f"lifecycle:{word}", "detail": detail}})

    def _lost(self, why: str) -> None:
        """The domain or the connection is gone (any thread)."""
        if self._gone is None:
            self._gone = why
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._closed.set)

    @contextlib.contextmanager
    def events(
        self,
        names: Iterable[str] | None = None,
        *,
        backlog: int = DEFAULT_EVENT_BACKLOG,
        wakeup: asyncio.Event | None = None,
    ) -> Iterator[EventFeed]:
        """Hear the domain's events (under their QMP names, see the module doc)."""
        if self._dom is None:
            raise MonitorError("cannot listen for events: monitor is not connected")
        feed = EventFeed(names, backlog=backlog, wakeup=wakeup)
        self._feeds.append(feed)
        try:
            yield feed
        finally:
            self._feeds.remove(feed)

    async def wait_closed(self) -> None:
        """Return once the domain stopped, libvirt hung up, or :meth:`close` was called."""
        if self._dom is None:
            return
        await self._closed.wait()

    # ----------------------------------------------------------------- sending

    async def _send(
        self,
        cmd: str,
        args: dict[str, object] | None = None,
        *,
        timeout: float | None = None,
    ) -> object:
        """Allow-list first, then the command as QMP JSON through libvirt."""
        check_command(cmd, args, allow_control=self.allow_control)
        what = str((args or {}).get("command-line", cmd)) if cmd == HMP else cmd
        if self._dom is None:
            raise MonitorError(f"cannot send {what}: monitor is not connected")
        if self._gone is not None:
            raise MonitorError(f"QEMU went away ({self._gone}) before {what}")
        request: dict[str, object] = {"execute": cmd}
        if args:
            request["arguments"] = args
        limit = self.command_timeout if timeout is None else timeout
        reply_text = await self._call(
            self._passthrough, json.dumps(request), timeout=limit, what=what
        )
        try:
            reply = json.loads(reply_text)
        except (TypeError, ValueError) as exc:
            raise MonitorError(
                f"{what}: libvirt passed on a reply that is not JSON: {str(reply_text)[:200]!r}"
            ) from exc
        if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
            error = reply["error"]
            raise CommandFailed(
                what,
                str(error.get("desc", error)),
                error_class=str(error.get("class", "GenericError")),
            )
        if not isinstance(reply, dict) or "return" not in reply:
            raise MonitorError(f"{what}: unexpected reply through libvirt: {reply!r}"[:300])
        return reply["return"]

    def _passthrough(self, request: str) -> str:
        """``qemuMonitorCommand`` in QMP mode (worker thread); libvirt errors mapped."""
        libvirt, libvirt_qemu = _modules()
        try:
            result: str = libvirt_qemu.qemuMonitorCommand(self._dom, request, 0)
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            message = _message(exc)
            if code in (
                libvirt.VIR_ERR_NO_DOMAIN,
                libvirt.VIR_ERR_OPERATION_INVALID,
                libvirt.VIR_ERR_NO_CONNECT,
                libvirt.VIR_ERR_SYSTEM_ERROR,
                libvirt.VIR_ERR_RPC,
            ):
                self._lost(f"libvirt: {message}")
                raise MonitorError(f"QEMU went away (libvirt: {message})") from exc
            raise MonitorError(f"libvirt {self.uri}: {message}") from exc
        return result

    # ------------------------------------------------------------------ close

    async def close(self, *, timeout: float = 5.0, expect_eof: bool = False) -> None:
        """Unsubscribe and release the connection. Safe to call twice."""
        shared, self._shared = self._shared, None
        dom, self._dom = self._dom, None
        self._closed.set()
        if shared is None:
            return
        del dom
        await self._call(_release, shared, self, timeout=timeout, what="closing")
