"""The pytest plugin, as a device developer uses it: a test file run by pytest itself.

``pytester`` runs complete example test files in a separate pytest process (the plugin
comes in through its ``pytest11`` entry point, as in any project that installs
qmirror), against real QEMUs booted under SeaBIOS. The expectations on the maps come
from QEMU itself: an e1000 alone on the i440FX gets its 128 KiB BAR at 0xfebc0000 from
SeaBIOS (QEMU 7.2), and its 64-byte I/O BAR at 0xc000.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from qmirror.errors import ExpectationError
from qmirror.live.snapshot import load
from qmirror.verify.expect import check_memory_map, parse_entry
from qmirror.verify.reading import Reading, from_snapshot


pytest_plugins = ["pytester"]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "qemu-7.2" / "x86_64"

#: The example of the README, word for word.
EXAMPLE = '''
"""My device's BARs appear where the firmware puts them."""

import pytest

from qmirror.pytest_plugin import assert_memory_map


@pytest.mark.qemu_vm("-machine", "pc", "-nic", "none", "-device", "e1000,id=nic0", boot=3)
def test_e1000_bars_are_mapped_after_firmware(mtree):
    assert_memory_map(mtree, {
        "memory": [("0xfebc0000", "0xfebdffff", "e1000-mmio", {"owner": "id=nic0"})],
        "I/O": ["0xc000-0xc03f e1000-io"],
    })
'''

MORE = """
import pytest

from qmirror.pytest_plugin import assert_memory_map


@pytest.mark.qemu_vm("-machine", "pc", "-nic", "none", "-device", "e1000,id=nic0", boot=3)
def test_wrong_address(mtree):
    assert_memory_map(mtree, {"memory": ["0xfe000000-0xfe01ffff e1000-mmio"]})


@pytest.mark.parametrize("qemu_vm_args", [["-machine", "pc"], ["-machine", "q35"]])
def test_paused_before_firmware_nothing_is_on_the_bus(qemu_vm, qemu_vm_args):
    # Before the firmware runs, no PCI BAR is mapped: pci's own window is empty.
    snap = qemu_vm.snapshot()
    names = {r.mr.label for v in snap.views for r in v.ranges}
    assert "vga.vram" not in names
    assert qemu_vm.hmp("info status").startswith("VM status: paused")


def test_fixture_override(qemu_vm):
    assert qemu_vm.command_line[-2:] == ["-machine", "isapc"]
"""

CONFTEST = """
import pytest


@pytest.fixture
def qemu_vm_args():
    return ["-machine", "isapc"]
"""


@pytest.mark.qemu
@pytest.mark.slow
def test_device_developer_example(pytester: pytest.Pytester, qemu_binary: str) -> None:
    pytester.makepyfile(test_e1000=EXAMPLE, test_more=MORE)
    pytester.makeconftest(CONFTEST)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--qmirror-qemu",
        qemu_binary,
        f"--junit-xml={junit}",
        "-rA",
        timeout=240,
    )
    result.assert_outcomes(passed=4, failed=1)
    out = result.stdout.str()
    # The failure reads like a diff: expected, found, what is at the address, nearby.
    assert "1 of 1 memory-map expectations failed" in out
    assert "expected e1000-mmio at 00000000fe000000-00000000fe01ffff" in out
    assert (
        "found:   00000000febc0000-00000000febdffff (prio 1, i/o): e1000-mmio owner:{dev id=nic0}"
    ) in out
    assert "at 00000000fe000000: nothing is mapped" in out
    # JUnit: the failure's text and QEMU's command line are in the report.
    suite = ET.parse(junit).getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert len(cases) == 5
    failure = cases["test_wrong_address"].find("failure")
    assert failure is not None and "expected e1000-mmio" in (failure.text or "")
    props = {p.get("name"): p.get("value") for p in cases["test_wrong_address"].iter("property")}
    assert re.search(
        r"-S -machine pc -nic none -device e1000,id=nic0$", props["qemu_command"] or ""
    )
    assert cases["test_e1000_bars_are_mapped_after_firmware"].find("failure") is None


@pytest.mark.qemu
def test_a_missing_qemu_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="""
def test_x(qemu_vm):
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--qmirror-qemu", "/nonexistent/qemu-system-x86_64", timeout=120
    )
    result.assert_outcomes(errors=1)
    assert "QEMU binary '/nonexistent/qemu-system-x86_64' not found" in result.stdout.str()


def test_the_plugin_is_registered_and_stays_out_of_the_way(
    pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> None:
    # It is loaded in this very run (entry point), adds a namespaced option and no
    # autouse fixture (an autouse fixture would be among this test's fixtures).
    assert pytestconfig.pluginmanager.get_plugin("qmirror") is not None
    assert pytestconfig.getoption("--qmirror-qemu") is None
    assert not {"qemu_vm", "mtree", "qemu_vm_args"} & set(request.fixturenames)


# -- the assertion helper on captured maps (no QEMU needed) ---------------------------


def reading(name: str) -> Reading:
    return from_snapshot(load(FIXTURES / name))


def qemu_line(name: str, region: str) -> str:
    text = (FIXTURES / name / "info-mtree-f-o.txt").read_text(encoding="utf-8")
    m = re.search(
        rf"^  [0-9a-f]{{16}}-[0-9a-f]{{16}} \(prio \d+, [a-z/]+\): {re.escape(region)}"
        r"\b.*$",
        text,
        re.M,
    )
    assert m is not None
    return m.group(0)


def test_expectations_in_every_form() -> None:
    r = reading("pc-booted")
    line = qemu_line("pc-booted", "e1000-mmio")  # pasted from QEMU's -f, owner and all
    start, last = (int(x, 16) for x in line.split()[0].split("-"))
    ok, report = check_memory_map(
        r,
        {
            "memory": [
                line,
                (start, last, "e1000-mmio"),
                (hex(start), None, "e1000-*", {"type": "i/o", "priority": 1}),
                {"name": "e1000-mmio", "start": start, "last": last, "owner": "{dev id=nic1}"},
                f"{start:x}-{last:x} e1000-mmio",
            ],
            "I/O": [(None, None, "e1000-io")],
        },
    )
    assert ok, report
    assert report.startswith("all 6 memory-map expectations hold (checked against QEMU's")


def test_a_failure_says_where_the_region_really_is() -> None:
    r = reading("pc-booted")
    ok, report = check_memory_map(
        r,
        {"memory": [("0xfebc0000", "0xfebdffff", "e1000-mmio")], "no-such-as": [(None, None, "x")]},
    )
    assert not ok
    assert "2 of 2 memory-map expectations failed" in report
    assert "found:   " + qemu_line("pc-booted", "e1000-mmio").strip() in report
    assert 'address space "no-such-as": there is none (address spaces: ' in report


def test_exact_maps_flag_what_no_expectation_names() -> None:
    r = reading("pc")
    ok, report = check_memory_map(r, {"memory": [(None, None, "pc.ram")]}, exact=True)
    assert not ok
    assert "ranges are mapped that no expectation names" in report
    assert "pc.bios" in report


def test_bad_expectations_are_refused_with_a_reason() -> None:
    with pytest.raises(ExpectationError, match="write 'START-LAST NAME'"):
        parse_entry("memory", "just words")
    with pytest.raises(ExpectationError, match="unknown attributes colour"):
        parse_entry("memory", (0, 1, "x", {"colour": "red"}))
    with pytest.raises(ExpectationError, match="is not a hex address"):
        parse_entry("memory", ("0xzz", 1, "x"))
    with pytest.raises(TypeError, match="must be a list of expectations"):
        check_memory_map(reading("pc"), {"memory": "pc.ram"})
