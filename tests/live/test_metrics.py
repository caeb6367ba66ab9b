"""``qmirror watch --metrics`` against the real things: QEMU, ``promtool`` and a Prometheus
server (Debian's ``prometheus``) started with a temporary configuration.

Expected values come from QEMU (its own ``info mtree -f``) and from Prometheus' HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from livehelpers import REPO, LaunchVM, QmirrorProcess, qemu_ranges, run_qmirror


pytestmark = pytest.mark.qemu

DOCS = REPO / "docs"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found: install Debian's prometheus package")
    return path


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text: str = reply.read().decode()
        return text


async def poll(what: str, check: Any, timeout: float = 60.0) -> Any:
    """Call *check* (blocking, in a thread) until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(OSError):
                got = await asyncio.to_thread(check)
                if got:
                    return got
            await asyncio.sleep(0.2)  # the next scrape or reading, not a fixed wait


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, parsed with a pattern of our own."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


@contextlib.asynccontextmanager
async def watcher(*args: str) -> AsyncIterator[str]:
    """``qmirror watch --metrics 127.0.0.1:0 --format none ARGS``, killed at the end;
    yields the URL it says it serves its metrics on."""
    async with QmirrorProcess(
        "watch", "--format", "none", "--metrics", "127.0.0.1:0", *args, jsonl=False, stdout=False
    ) as w:
        line = await w.stderr_line()
        m = re.search(r"metrics on (http://\S+)", line)
        assert m, line
        yield m.group(1)


@contextlib.contextmanager
def prometheus(tmp: Path, scrape: str) -> Iterator[str]:
    """A Prometheus server on a free loopback port scraping *scrape* every second, with
    its storage in *tmp*; killed by pid afterwards."""
    binary = need("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: qmirror\n    static_configs:\n"
        f"      - targets: ['{scrape}']\n"
    )
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        cwd=tmp,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()


# ------------------------------------------------------------------------ tests


@pytest.fixture
async def two_vms(launch_vm: LaunchVM, tmp_path: Path) -> AsyncIterator[tuple[Any, Any, Path]]:
    a = await launch_vm("-machine", "pc", "-m", "16", "-nodefaults")
    b = await launch_vm("-machine", "q35", "-m", "16", "-nodefaults")
    listing = tmp_path / "targets"
    listing.write_text(f"{a.socket}\nunix:{b.socket}\n")
    yield a, b, listing


async def test_served_metrics_pass_promtool_and_match_qemu(two_vms: tuple[Any, Any, Path]) -> None:
    a, b, listing = two_vms
    async with watcher("--targets-file", str(listing), "--interval", "0.5") as url:

        def ready() -> str | None:
            text = http_get(url)
            got = samples(text)
            done = all(
                got.get(f'qmirror_readings_total{{target="{t}"}}', 0) >= 2
                for t in (a.socket, f"unix:{b.socket}")
            )
            return text if done else None

        text = await poll("two readings of each VM", ready)
    lint = await asyncio.to_thread(promtool, "check", "metrics", stdin=text)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    got = samples(text)
    for vm, label in ((a, a.socket), (b, f"unix:{b.socket}")):
        assert got[f'qmirror_up{{target="{label}"}}'] == 1
        assert got[f'qmirror_match{{target="{label}"}}'] == 1
        assert got[f'qmirror_mismatches_total{{target="{label}"}}'] == 0
        for kind in ("timeout", "gone", "failed", "connect"):
            assert got[f'qmirror_errors_total{{kind="{kind}",target="{label}"}}'] == 0
        assert got[f'qmirror_last_change_timestamp_seconds{{target="{label}"}}'] > 1.7e9
        flat = await vm.control.hmp("info mtree -f")
        for space in ("memory", "I/O"):
            want = len(qemu_ranges(flat, space))
            key = f'qmirror_flatview_ranges{{address_space="{space}",target="{label}"}}'
            assert got[key] == want, (key, want)
    assert got["process_cpu_seconds_total"] > 0
    assert got["process_resident_memory_bytes"] > 0


async def test_real_prometheus_scrapes_the_series(launch_vm: LaunchVM, tmp_path: Path) -> None:
    vm = await launch_vm("-machine", "pc", "-m", "16", "-nodefaults")
    async with watcher(vm.socket, "--interval", "1") as url:
        scrape = urllib.parse.urlsplit(url).netloc
        with prometheus(tmp_path, scrape) as api:

            def query(q: str) -> list[Any] | None:
                ask = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": q})
                doc = json.loads(http_get(ask))
                result: list[Any] = doc["data"]["result"]
                return result or None

            match = await poll("qmirror_match in Prometheus", lambda: query("qmirror_match"))
            readings = await poll("readings", lambda: query("qmirror_readings_total > 1"))
            ranges = await poll(
                "ranges", lambda: query('qmirror_flatview_ranges{address_space="memory"}')
            )
    assert match[0]["metric"]["target"] == vm.socket
    assert match[0]["metric"]["job"] == "qmirror"
    assert match[0]["value"][1] == "1"
    assert float(readings[0]["value"][1]) > 1
    flat = await vm.control.hmp("info mtree -f")
    assert float(ranges[0]["value"][1]) == len(qemu_ranges(flat, "memory"))


async def test_port_in_use_is_one_line_exit_2(launch_vm: LaunchVM) -> None:
    vm = await launch_vm("-machine", "pc", "-nodefaults")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = await run_qmirror(
            "watch", vm.socket, "--metrics", f"127.0.0.1:{port}", "--count", "1"
        )
    assert run.code == 2
    assert "Traceback" not in run.err
    lines = run.err.strip().splitlines()
    assert lines == [
        f"qmirror watch: --metrics 127.0.0.1:{port}: cannot listen: address already in use"
    ]


async def test_bad_metrics_address_is_exit_2() -> None:
    run = await run_qmirror("watch", "unix:/nonexistent.qmp", "--metrics", "nine")
    assert run.code == 2
    assert "expected HOST:PORT" in run.err and "Traceback" not in run.err


def test_fleet_docs_rules_and_config_validate(tmp_path: Path) -> None:
    rules = DOCS / "qmirror-alerts.yml"
    out = promtool("check", "rules", str(rules))
    assert out.returncode == 0, out.stdout + out.stderr
    config = tmp_path / "prometheus.yml"
    shutil.copy(DOCS / "prometheus-qmirror.yml", config)
    shutil.copy(rules, tmp_path / "qmirror-alerts.yml")
    out = promtool("check", "config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    # The alert fires on a mismatch that lasts, and not on a match (promtool's own
    # rule unit tests).
    test = tmp_path / "alerts-test.yml"
    description = "Run `qmirror check libvirt:web01 -v` on hv01:9464 to see the differing ranges."
    test.write_text(f"""rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'qmirror_match{{target="libvirt:web01", instance="hv01:9464", job="qmirror"}}'
        values: '1 1 0 0 0 0 0 0 0'
      - series: 'qmirror_match{{target="libvirt:web02", instance="hv01:9464", job="qmirror"}}'
        values: '1 1 1 1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 4m
        alertname: QmirrorFlatViewMismatch
        exp_alerts: []
      - eval_time: 8m
        alertname: QmirrorFlatViewMismatch
        exp_alerts:
          - exp_labels: {{severity: warning, target: "libvirt:web01", instance: "hv01:9464",
                         job: qmirror}}
            exp_annotations:
              summary: "qmirror: memory map of libvirt:web01 on hv01:9464 does not match QEMU's"
              description: "{description}"
""")
    out = promtool("test", "rules", str(test))
    assert out.returncode == 0, out.stdout + out.stderr


def test_systemd_unit_runs_a_fleet_watch() -> None:
    unit = (DOCS / "qmirror-watch.service").read_text()
    exec_start = re.search(r"^ExecStart=((?:[^\n]*\\\n)*[^\n]*)", unit, re.MULTILINE)
    assert exec_start
    words = exec_start.group(1).replace("\\\n", " ").split()
    assert words[1:3] == ["watch", "--targets-file"]
    assert "--metrics" in words
    # The options exist (argparse accepts them).
    from qmirror.cli import build_parser  # noqa: PLC0415

    args = build_parser().parse_args(words[1:])
    assert args.metrics == ":9464" and args.format == "none"


def start_qemu(binary: str, sock: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            binary,
            "-machine",
            "pc",
            "-m",
            "16",
            "-nodefaults",
            "-S",
            "-display",
            "none",
            "-qmp",
            f"unix:{sock},server=on,wait=off",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_qemu(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


async def test_reconnect_keeps_the_series(qemu_binary: str, short_tmp: Path) -> None:
    """A VM that is not there yet, comes, goes away and comes back: one series throughout,
    ``qmirror_up`` following it, counters going on."""
    sock = short_tmp / "vm.qmp"
    label = f"unix:{sock}"
    procs: list[subprocess.Popen[bytes]] = []

    def value(text: str, name: str, **labels: str) -> float | None:
        want = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, "target": label}.items()))
        return samples(text).get(f"{name}{{{want}}}")

    try:
        async with watcher(label, "--reconnect", "0.2", "--interval", "0.3") as url:

            def when(what: str, pred: Callable[[str], bool]) -> Awaitable[str]:
                def check() -> str | None:
                    text = http_get(url)
                    return text if pred(text) else None

                return poll(what, check)

            def count(text: str, name: str, **labels: str) -> float:
                return value(text, name, **labels) or 0.0

            text = await when(
                "a connect error", lambda t: count(t, "qmirror_errors_total", kind="connect") >= 1
            )
            assert value(text, "qmirror_up") == 0
            procs.append(start_qemu(qemu_binary, sock))
            text = await when(
                "readings of the new VM",
                lambda t: count(t, "qmirror_readings_total") >= 2 and value(t, "qmirror_up") == 1,
            )
            assert value(text, "qmirror_match") == 1
            stop_qemu(procs[0])
            text = await when("the VM gone", lambda t: value(t, "qmirror_up") == 0)
            before = count(text, "qmirror_readings_total")
            assert before >= 2
            assert value(text, "qmirror_match") is None  # no verdict for a VM not followed
            sock.unlink(missing_ok=True)
            procs.append(start_qemu(qemu_binary, sock))
            text = await when(
                "readings after reconnecting",
                lambda t: (
                    count(t, "qmirror_readings_total") > before and value(t, "qmirror_up") == 1
                ),
            )
            lint = await asyncio.to_thread(promtool, "check", "metrics", stdin=text)
            assert lint.returncode == 0, lint.stdout
            assert text.count("qmirror_up{") == 1
            assert count(text, "qmirror_errors_total", kind="gone") >= 1
    finally:
        for proc in procs:
            stop_qemu(proc)
