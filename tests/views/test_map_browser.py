"""The memory-map page in a real browser: Debian's headless Chromium, driven by Playwright.

Chromium comes from Debian (``scripts/setup`` installs ``chromium``); Playwright only
drives it (``executable_path``), it never downloads a browser. Each test gets a fresh
profile directory and a screenshot is kept in the test's tmp directory.
"""

from __future__ import annotations

import importlib
import itertools
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from livehelpers import skip_live

from qmirror.cli import main


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _playwright() -> Any:
    try:
        return importlib.import_module("playwright.sync_api")
    except ImportError:
        return None


sync_api = _playwright()


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    """Every test here drives Chromium: skipped without it, a failure in CI."""
    if sync_api is None:
        skip_live("playwright is not installed (the dev extra: scripts/setup --dev)")
    if shutil.which(CHROMIUM) is None:
        skip_live(f"{CHROMIUM} not found (Debian package chromium)")


class Browser:
    """Chromium, started on first use (after the test wrote its page: the CLI's asyncio
    must not run inside Playwright's loop), and everything the page said."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self._playwright: Any = None
        self._context: Any = None
        self.page: Any = None
        self.messages: list[tuple[str, str]] = []
        self.requests: list[str] = []

    def open(self, path: Path) -> None:
        if self._context is None:
            self._playwright = sync_api.sync_playwright().start()
            self._context = self._playwright.chromium.launch_persistent_context(
                str(self.profile),
                executable_path=CHROMIUM,
                headless=True,
                args=ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            page = self.page = self._context.new_page()
            page.on("console", lambda m: self.messages.append((m.type, m.text)))
            page.on("pageerror", lambda e: self.messages.append(("pageerror", str(e))))
            page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=20_000)

    def errors(self) -> list[tuple[str, str]]:
        return [m for m in self.messages if m[0] in ("error", "pageerror", "warning")]

    def close(self) -> None:
        if self._context is not None:
            self._context.close()
        if self._playwright is not None:
            self._playwright.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "chromium-profile")
    try:
        yield b
    finally:
        b.close()


def qemu_address_spaces(name: str) -> set[str]:
    text = (FIXTURES / name / "info-mtree-f-o.txt").read_text(encoding="utf-8")
    return set(re.findall(r'^ AS "(.*)", root: ', text, re.M))


def qemu_line(name: str, region: str) -> tuple[str, str]:
    text = (FIXTURES / name / "info-mtree-f-o.txt").read_text(encoding="utf-8")
    m = re.search(
        rf"^  ([0-9a-f]{{16}})-([0-9a-f]{{16}}) \(prio \d+, i/o\): {re.escape(region)}"
        r" ",
        text,
        re.M,
    )
    assert m is not None
    return m.group(1), m.group(2)


def test_map_page_loads_shows_address_spaces_and_hovers(browser: Browser, tmp_path: Path) -> None:
    html = tmp_path / "q35-booted.html"
    assert main(["map", str(FIXTURES / "q35-booted"), "--html", str(html)]) == 0
    browser.open(html)
    page = browser.page
    assert browser.errors() == []
    # Nothing was fetched but the page itself.
    assert [u for u in browser.requests if not u.startswith("file:")] == []
    shown = set()
    for section in page.locator("section.view").all():
        shown.update(section.locator("h2 .as-name").all_inner_texts())
    assert shown == qemu_address_spaces("q35-booted")

    # Hover e1000e's BAR in "memory": the tooltip says what and where, the tree row lights up.
    start, last = qemu_line("q35-booted", "e1000e-mmio")
    memory = page.locator(
        "section.view", has=page.locator("h2 .as-name", has_text=re.compile(r"^memory$"))
    )
    rect = _segment(page, memory, "e1000e-mmio")
    rect.hover()
    tip = page.locator("#tip")
    assert tip.is_visible()
    text = tip.inner_text()
    assert "e1000e-mmio" in text and f"0x{start} – 0x{last}" in text
    assert "path system › pci (prio -1) › e1000e-mmio (prio 1)" in text
    assert memory.locator(".node.hl .name").inner_text() == "e1000e-mmio"

    # Zoom in with the wheel: the visible address labels change.
    before = memory.locator("svg.map text.tick").all_inner_texts()
    box = memory.locator("svg.map").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + 20)
    for _ in range(6):
        page.mouse.wheel(0, -300)
    page.wait_for_timeout(100)
    after = memory.locator("svg.map text.tick").all_inner_texts()
    assert after != before
    # The linear scale redraws without errors too.
    page.locator("input[name=scale][value=linear]").check()
    assert browser.errors() == []

    shot = tmp_path / "map-q35-booted.png"
    page.mouse.move(0, 0)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def _segment(page: Any, section: Any, name: str) -> Any:
    """The map rectangle of the range named ``name`` in a section."""
    i = page.evaluate(
        """([id, name]) => {
             const sec = document.getElementById(id);
             for (const r of sec.querySelectorAll("rect.seg")) {
               if (r.dataset.name === name) return r.dataset.i;
             }
             return null;
           }""",
        [section.get_attribute("id"), name],
    )
    assert i is not None, f"no rectangle for {name}"
    return section.locator(f"rect.seg[data-i='{i}']")


def test_map_of_two_readings_highlights_changes(browser: Browser, tmp_path: Path) -> None:
    html = tmp_path / "pc-diff.html"
    assert (
        main(["map", str(FIXTURES / "pc"), str(FIXTURES / "pc-booted"), "--html", str(html)]) == 0
    )
    browser.open(html)
    page = browser.page
    assert browser.errors() == []
    assert (
        page.locator("h1")
        .inner_text()
        .endswith("(changes since pc (pc-i440fx-7.2, QEMU 7.2.22, tcg))")
    )
    assert page.locator("rect.change-added").count() > 0
    removed = page.locator("rect.removed")
    assert removed.count() > 0
    removed.first.hover()
    assert "removed since the older reading" in page.locator("#tip").inner_text()
    page.screenshot(path=str(tmp_path / "pc-diff.png"), full_page=True)


@pytest.mark.qemu
def test_map_of_a_live_vm(browser: Browser, tmp_path: Path, qemu_binary: str) -> None:
    html = tmp_path / "live.html"
    assert (
        main(
            [
                "map",
                "--html",
                str(html),
                "--launch",
                "--",
                qemu_binary,
                "-machine",
                "q35",
                "-nic",
                "none",
            ]
        )
        == 0
    )
    browser.open(html)
    assert browser.errors() == []
    names = set(browser.page.locator("section.view h2 .as-name").all_inner_texts())
    assert {"memory", "I/O", "cpu-memory-0"} <= names
    browser.page.screenshot(path=str(tmp_path / "live.png"), full_page=True)


def test_map_labels_large_ranges_and_goes_to_an_address(browser: Browser, tmp_path: Path) -> None:
    """Issue 17: large ranges are labelled even where their name does not fit in the bar,
    there is a table of the ranges, and a go-to-address box finds QEMU's range."""
    html = tmp_path / "q35-booted.html"
    assert main(["map", str(FIXTURES / "q35-booted"), "--html", str(html)]) == 0
    browser.open(html)
    page = browser.page
    memory = page.locator(
        "section.view", has=page.locator("h2 .as-name", has_text=re.compile(r"^memory$"))
    )
    callouts = memory.locator("svg.map text.callout").all_text_contents()
    labels = callouts + memory.locator("svg.map text.label").all_text_contents()
    for region in ("pcie-mmcfg-mmio 256 MiB", "vga.vram 16 MiB", "e1000e-mmio 128 KiB"):
        assert region in labels, labels
    # The map is more than a thin bar: call-out rows above it, the range table below.
    svg_box = memory.locator("svg.map").bounding_box()
    assert svg_box is not None and svg_box["height"] >= 120
    rows = memory.locator("table.ranges-t tr[data-i]")
    assert rows.count() == int(memory.locator("h2 small").inner_text().split(" · ")[1].split()[0])
    # Address labels keep their distance.
    boxes = [
        b
        for b in (t.bounding_box() for t in memory.locator("svg.map text.tick").all())
        if b is not None
    ]
    boxes.sort(key=lambda b: b["x"])
    assert all(b["x"] - (a["x"] + a["width"]) >= 8 for a, b in itertools.pairwise(boxes))

    # Go to an address inside e1000e's BAR, as QEMU placed it.
    start, _ = qemu_line("q35-booted", "e1000e-mmio")
    inside = int(start, 16) + 0x10
    page.fill("#goto", f"{inside:#x}")
    page.press("#goto", "Enter")
    result = memory.locator(".goto-result").inner_text()
    assert result.startswith(f"{inside:#x}: e1000e-mmio +0x10 (MMIO / port I/O"), result
    assert memory.locator("rect.seg.goto").get_attribute("data-name") == "e1000e-mmio"
    assert memory.locator("table.ranges-t tr.hl td").nth(4).inner_text() == "e1000e-mmio"
    # An address where nothing is mapped says so.
    page.fill("#goto", "a0000000")  # between RAM below 4 GiB and the MMCONFIG window
    page.press("#goto", "Enter")
    assert (
        memory.locator(".goto-result")
        .inner_text()
        .startswith("0xa0000000: nothing mapped (0x8000000 – 0xaffffff")
    )
    page.fill("#goto", "0x7fffffff0")
    page.press("#goto", "Enter")
    assert "nothing mapped, beyond the last range" in memory.locator(".goto-result").inner_text()
    page.fill("#goto", "0xzz")
    page.press("#goto", "Enter")
    assert "not a hexadecimal address" in memory.locator(".goto-result").inner_text()
    assert browser.errors() == []
