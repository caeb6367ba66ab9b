"""Prometheus metrics for ``qmirror watch --metrics HOST:PORT``: speak Prometheus, do not
build a collector.

One :class:`FleetMetrics` serves every mirror of the process on one HTTP endpoint (the
Prometheus text format, via ``prometheus_client`` with a registry of its own, plus the
client's process and platform collectors). Per target:

======================================================  ==============================
``qmirror_up{target}``                                  1 while the mirror is following
                                                        the VM, 0 once it ended
``qmirror_readings_total{target}``                      readings taken (also those that
                                                        found nothing new)
``qmirror_match{target}``                               1 if the latest validation
                                                        matched QEMU's ``-f``, else 0
``qmirror_mismatches_total{target}``                    readings whose validation failed
``qmirror_errors_total{target,kind}``                   failed readings; kind
                                                        ``timeout``/``gone``/``failed``,
                                                        or ``connect`` (not reached)
``qmirror_flatview_ranges{target,address_space}``       ranges in each address space's
                                                        FlatView (our rendering)
``qmirror_last_change_timestamp_seconds{target}``       UNIX time of the latest reading
                                                        that changed the map
======================================================  ==============================

The values are read from the mirrors when Prometheus scrapes (a custom collector), and
the only hook in a mirror is an ordinary :class:`~qmirror.live.mirror.MirrorObserver`
(errors and the time of the last change), so nothing is counted twice and nothing runs
between scrapes. ``qmirror_match`` and the FlatView sizes appear once the first reading
is in, and disappear when the target is no longer followed. A target that is watched
again after it went away (``watch --reconnect``) keeps its series: counters go on from
where they were. Address spaces that share a name are told apart by their root region
(and, if need be, their index among equals).
"""

from __future__ import annotations

import errno
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qmirror.errors import QmirrorError
from qmirror.live.mirror import ErrorReport, Mirror, MirrorObserver
from qmirror.live.mirror import Frame as MirrorFrame


__all__ = ["ERROR_KINDS", "FleetMetrics", "parse_listen_address"]

#: The ``kind`` label values of ``qmirror_errors_total`` (every one is always exported):
#: a reading that timed out, the VM gone, another failed reading, and a VM that could not
#: be reached at all (attaching, or reattaching with ``--reconnect``).
ERROR_KINDS: Final = ("timeout", "gone", "failed", "connect")

_LISTEN = re.compile(r"\A(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d+)\Z")


def parse_listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all addresses) as ``(host, port)``.

    :raise QmirrorError: anything else, or a port out of range.
    """
    match = _LISTEN.match(text.strip())
    if match is None:
        raise QmirrorError(f"--metrics {text!r}: expected HOST:PORT, [IPv6]:PORT or :PORT")
    port = int(match.group("port"))
    if not 0 <= port < 65536:
        raise QmirrorError(f"--metrics {text!r}: port {port} is out of range")
    host = match.group("v6") or match.group("host") or "0.0.0.0"
    return host, port


@dataclass(eq=False)
class _Watched(MirrorObserver):
    """One target: its current mirror (if any), and what earlier mirrors of it counted."""

    target: str
    mirror: Mirror | None = None
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    last_change: float | None = None
    ended: bool = False
    readings_before: int = 0
    mismatches_before: int = 0

    def follow(self, mirror: Mirror) -> None:
        """A new mirror of the same target (reattached): carry the counts over."""
        old = self.mirror
        if old is not None:
            self.readings_before += old.readings
            self.mismatches_before += old.mismatches
            if self in old.observers:
                old.observers.remove(self)
        self.mirror = mirror
        self.ended = False
        mirror.observers.append(self)

    def on_reading(self, mirror: Mirror, frame: MirrorFrame, previous: MirrorFrame | None) -> None:
        self.last_change = time.time()

    def on_error(self, mirror: Mirror, report: ErrorReport) -> None:
        self.errors[report.kind] = self.errors.get(report.kind, 0) + 1

    def on_end(self, mirror: Mirror, reason: str) -> None:
        self.ended = True


def _space_labels(mirror: Mirror) -> list[tuple[str, int]]:
    """``(address_space label, ranges)`` per address space with a current FlatView."""
    counts: dict[tuple[str, str | None, str | None, int], int] = {}
    for t in list(mirror.last_transitions):
        if t.new is not None:
            counts[t.key] = len(t.new_ranges)
    by_name: dict[str, int] = {}
    for key in counts:
        by_name[key[0]] = by_name.get(key[0], 0) + 1
    out = []
    for key, n in counts.items():
        name, root, _alias, index = key
        label = name
        if by_name[name] > 1:
            label = f"{name} (root {root})" + (f" #{index}" if index else "")
        out.append((label, n))
    return out


class FleetMetrics(Collector):
    """Serves the metrics of every mirror added with :meth:`watch` on one endpoint.

    ::

        metrics = FleetMetrics()
        metrics.start("127.0.0.1", 9464)
        metrics.watch(mirror)       # before mirror.run()
        ...
        metrics.stop()

    :param process: also export the client's process and platform collectors.
    """

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        if process:
            self.registry.register(PROCESS_COLLECTOR)
            self.registry.register(PLATFORM_COLLECTOR)
        self.registry.register(self)
        self._watched: list[_Watched] = []
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self.address: tuple[str, int] | None = None

    def _entry(self, target: str) -> _Watched:
        with self._lock:
            for w in self._watched:
                if w.target == target:
                    return w
            w = _Watched(target)
            self._watched.append(w)
            return w

    def watch(self, mirror: Mirror, target: str | None = None) -> None:
        """Export *mirror*'s state under ``target`` (default: the mirror's label); a
        target seen before keeps its series and counts on."""
        self._entry(target or mirror.label).follow(mirror)

    def unreachable(self, target: str) -> None:
        """*target* could not be attached: ``qmirror_up`` 0, one more ``connect`` error."""
        w = self._entry(target)
        w.ended = True
        w.errors["connect"] += 1

    def collect(self) -> Iterator[Metric]:
        """Called by the HTTP thread at each scrape: read the mirrors as they are now."""
        with self._lock:
            watched = list(self._watched)
        up = GaugeMetricFamily(
            "qmirror_up",
            "1 while qmirror follows the target, 0 once it "
            "stopped (VM gone, readings kept failing)",
            labels=["target"],
        )
        readings = CounterMetricFamily(
            "qmirror_readings",
            "Readings of the VM's memory map taken (also those that found nothing new)",
            labels=["target"],
        )
        match = GaugeMetricFamily(
            "qmirror_match",
            "1 if the latest reading's FlatViews match QEMU's own `info mtree -f`, 0 if not",
            labels=["target"],
        )
        mismatches = CounterMetricFamily(
            "qmirror_mismatches",
            "Readings whose FlatViews did not match QEMU's own",
            labels=["target"],
        )
        errors = CounterMetricFamily(
            "qmirror_errors",
            "Readings that failed, by kind (timeout, gone, failed)",
            labels=["target", "kind"],
        )
        ranges = GaugeMetricFamily(
            "qmirror_flatview_ranges",
            "Ranges in the FlatView of each address space (latest reading)",
            labels=["target", "address_space"],
        )
        changed = GaugeMetricFamily(
            "qmirror_last_change_timestamp_seconds",
            "UNIX time of the latest reading that changed the memory map",
            labels=["target"],
        )
        for w in watched:
            m = w.mirror
            up.add_metric([w.target], 0.0 if w.ended or m is None else 1.0)
            readings.add_metric([w.target], float(w.readings_before + (m.readings if m else 0)))
            mismatches.add_metric(
                [w.target], float(w.mismatches_before + (m.mismatches if m else 0))
            )
            for kind, n in w.errors.items():
                errors.add_metric([w.target, kind], float(n))
            frame = m.frame if m is not None and not w.ended else None
            if m is not None and frame is not None:
                match.add_metric([w.target], 1.0 if frame.ok else 0.0)
                for space, n in _space_labels(m):
                    ranges.add_metric([w.target, space], float(n))
            if w.last_change is not None:
                changed.add_metric([w.target], w.last_change)
        yield from (up, readings, match, mismatches, errors, ranges, changed)

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` (any path, in fact) on *host*:*port* in a daemon thread.

        :return: the address actually bound (port 0 picks a free one).
        :raise QmirrorError: the address is in use, not ours, or not an address.
        """
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            why = (
                "address already in use"
                if exc.errno == errno.EADDRINUSE
                else exc.strerror or str(exc)
            )
            raise QmirrorError(f"--metrics {host}:{port}: cannot listen: {why}") from exc
        self._server = server
        bound = server.server_address
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    def stop(self) -> None:
        """Stop serving (safe to call twice)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
