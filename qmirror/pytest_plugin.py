"""pytest plugin: start a QEMU in a test, read its memory map, assert on it.

Installed with qmirror (entry point ``pytest11``), so any test suite can use::

    import pytest
    from qmirror.pytest_plugin import assert_memory_map

    @pytest.mark.qemu_vm("-machine", "pc", "-nic", "none", "-device", "e1000,id=nic0",
                         boot=3)
    def test_e1000_bar_is_mapped_after_firmware(mtree):
        assert_memory_map(mtree, {"memory": [("0xfebc0000", "0xfebdffff", "e1000-mmio")]})

Fixtures (none is autouse; nothing happens unless a test asks for one):

``qemu_vm``
    A :class:`QemuVM`: QEMU started paused (``-S``, ``-display none``, QMP on a private
    socketpair) with the arguments of the ``qemu_vm`` marker, else those of the
    ``qemu_vm_args`` fixture; with ``boot=SECONDS`` the guest runs that long (firmware
    programs BARs, PAM, SMRAM) and is stopped again. Always shut down afterwards
    (``quit``, then SIGTERM, then SIGKILL). Synchronous: works in plain tests, and in
    async ones too (it runs on its own event loop thread).
``qemu_vm_args``
    The QEMU arguments when no marker gives them: ``[tool.qmirror] machine-args``, or
    none (QEMU's defaults). Override it in a conftest, or parametrize it.
``mtree``
    A :class:`~qmirror.verify.reading.Reading` of the VM: QEMU's ``info mtree -o -D`` and
    ``info mtree -f -o`` texts, the :class:`~qmirror.core.model.Machine` rebuilt from them,
    its FlatViews as qmirror renders them, and ``info ramblock``.

Options: ``--qmirror-qemu BINARY`` picks the QEMU (default ``[tool.qmirror] qemu``,
``$QMIRROR_QEMU``, ``qemu-system-x86_64``). QEMU's command line is recorded as the
test's ``qemu_command`` property (it shows in ``--junit-xml``) and its output is
attached to a failing test's report.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import pytest

from qmirror.errors import MonitorTimeout, QmirrorError
from qmirror.live import config as qconfig
from qmirror.live.launcher import QemuInstance
from qmirror.live.qmp import Monitor
from qmirror.live.snapshot import take_snapshot
from qmirror.verify.expect import Entry, assert_memory_map, check_memory_map
from qmirror.verify.reading import Reading, from_snapshot


__all__ = ["Entry", "QemuVM", "assert_memory_map", "check_memory_map"]

_T = TypeVar("_T")
#: Seconds on top of the configured timeouts for a whole step (launch, boot, read).
_SLACK = 30.0


class QemuVM:
    """A QEMU owned by one test, driven from synchronous code.

    Its asyncio work (:class:`~qmirror.live.launcher.QemuInstance`, the monitor) runs on a
    private event loop in a thread of its own, so the fixture does not depend on the
    test's event loop, or on there being one.

    :param args: QEMU arguments after qmirror's own.
    :param binary: the QEMU executable.
    :param boot: seconds to let the guest run after start (then it is stopped again).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        binary: str,
        boot: float | None = None,
        connect_timeout: float = 30.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.args = list(args)
        self.binary = binary
        self.boot = boot
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.booted_seconds: float | None = None
        self._instance = QemuInstance(
            self.args,
            binary=binary,
            paused=True,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="qmirror-qemu-vm", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<QemuVM {self._instance!r}>"

    def run(self, coro: Coroutine[Any, Any, _T], *, timeout: float | None = None) -> _T:
        """Run a coroutine on the VM's loop (e.g. one using :attr:`monitor`) and wait."""
        limit = timeout if timeout is not None else self.command_timeout + _SLACK
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(limit)
        except FutureTimeout as err:
            future.cancel()
            raise MonitorTimeout(f"QEMU did not finish within {limit:g}s") from err

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Launch QEMU (paused) and, with :attr:`boot`, let it run that long."""
        self.run(self._instance.launch(), timeout=self.connect_timeout + _SLACK)
        if self.boot:
            self.run_for(self.boot)

    def run_for(self, seconds: float) -> None:
        """Let the guest run for ``seconds``, then stop it (its map then holds still)."""

        async def go() -> None:
            await self.monitor.execute("cont")
            await asyncio.sleep(seconds)
            await self.monitor.execute("stop")

        self.run(go(), timeout=seconds + self.command_timeout + _SLACK)
        self.booted_seconds = (self.booted_seconds or 0.0) + seconds

    def close(self) -> None:
        """Shut QEMU down (quit, SIGTERM, SIGKILL) and stop the loop thread. Idempotent."""
        if not self._loop.is_closed():
            try:
                self.run(
                    self._instance.shutdown(), timeout=self._instance.shutdown_timeout + _SLACK
                )
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
                if not self._thread.is_alive():
                    self._loop.close()

    # -- what a test uses ----------------------------------------------------------

    @property
    def instance(self) -> QemuInstance:
        return self._instance

    @property
    def monitor(self) -> Monitor:
        """The QMP :class:`~qmirror.live.qmp.Monitor` (control allowed: the VM is the test's);
        its coroutines must run through :meth:`run`."""
        return self._instance.monitor

    @property
    def pid(self) -> int | None:
        return self._instance.pid

    @property
    def command_line(self) -> list[str]:
        return self._instance.command_line

    def log_text(self) -> str:
        """QEMU's stdout and stderr so far."""
        return self._instance.log_text()

    def hmp(self, command_line: str) -> str:
        """An HMP command's reply (e.g. ``info pci``), CR LF kept."""
        return self.run(self.monitor.hmp(command_line))

    def qmp(self, command: str, arguments: dict[str, object] | None = None) -> object:
        """A QMP command's ``return`` value."""
        return self.run(self.monitor.execute(command, arguments))

    def snapshot(self) -> Reading:
        """Read the memory map now (consistently) and rebuild it."""

        async def go() -> tuple[Any, str]:
            snap = await take_snapshot(
                self.monitor,
                label=" ".join(self.command_line),
                command_line=tuple(self.command_line),
                boot_seconds=self.booted_seconds,
            )
            return snap, await self.monitor.hmp("info ramblock")

        snap, ramblock = self.run(go(), timeout=4 * self.command_timeout + _SLACK)
        args = " ".join(self.args)
        label = f"{self.binary} {args}".strip()
        return from_snapshot(snap, label=label, ramblock_text=ramblock)


# -- hooks and fixtures -----------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qmirror", "qmirror (QEMU memory maps)")
    group.addoption(
        "--qmirror-qemu",
        metavar="BINARY",
        default=None,
        help="QEMU binary for the qemu_vm fixture (default: [tool.qmirror] qemu, "
        "$QMIRROR_QEMU, qemu-system-x86_64)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "qemu_vm(*args, boot=None): QEMU arguments for the qemu_vm fixture (qmirror); "
        "boot=SECONDS lets the guest run that long before the test reads it",
    )


def _settings(request: pytest.FixtureRequest) -> qconfig.Config:
    try:
        return qconfig.load(
            cli={"qemu": request.config.getoption("--qmirror-qemu")}, cwd=request.config.rootpath
        )
    except QmirrorError as exc:
        raise pytest.UsageError(f"qmirror settings: {exc}") from exc


@pytest.fixture
def qemu_vm_args(request: pytest.FixtureRequest) -> list[str]:
    """QEMU arguments for ``qemu_vm`` when no ``qemu_vm`` marker gives them."""
    return list(_settings(request).machine_args)


@pytest.fixture
def qemu_vm(request: pytest.FixtureRequest, qemu_vm_args: list[str]) -> Iterator[QemuVM]:
    """A QEMU for this test, shut down afterwards (see the module docstring)."""
    settings = _settings(request)
    marker = request.node.get_closest_marker("qemu_vm")
    args = [str(a) for a in marker.args] if marker is not None and marker.args else qemu_vm_args
    unknown = set(marker.kwargs) - {"boot"} if marker is not None else set()
    if unknown:
        pytest.fail(
            f"qemu_vm marker: unknown keyword {', '.join(sorted(unknown))} (known: boot)",
            pytrace=False,
        )
    boot = marker.kwargs.get("boot") if marker is not None else None
    if boot is None:
        boot = settings.boot_seconds
    binary = settings.qemu
    if shutil.which(binary) is None:
        pytest.fail(
            f"qemu_vm: QEMU binary {binary!r} not found (--qmirror-qemu, "
            "[tool.qmirror] qemu or $QMIRROR_QEMU)",
            pytrace=False,
        )
    vm = QemuVM(
        args,
        binary=binary,
        boot=boot,
        connect_timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout,
    )
    try:
        try:
            vm.start()
        except QmirrorError as exc:
            pytest.fail(f"qemu_vm: QEMU did not start: {exc}", pytrace=False)
        request.node.user_properties.append(("qemu_command", " ".join(vm.command_line)))
        yield vm
    finally:
        try:
            vm.close()
        finally:
            log = vm.log_text().strip()
            if log:
                request.node.add_report_section("teardown", "qemu log", log)


@pytest.fixture
def mtree(qemu_vm: QemuVM) -> Reading:
    """The memory map of ``qemu_vm`` as it is when the test starts."""
    return qemu_vm.snapshot()
