"""`qmirror diff`: what differs between two readings, with diff(1)'s exit codes.

The inputs are QEMU's own texts, edited by hand where a known difference is wanted
(a priority changed, a region removed, address-space blocks reordered), and two
readings of one live VM before and after its firmware ran.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from qmirror.cli import main
from qmirror.live.launcher import QemuInstance
from qmirror.live.snapshot import save, take_snapshot
from qmirror.verify import snapdiff
from qmirror.verify.ignore import IgnoreRules
from qmirror.verify.reading import from_snapshot, read


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64"
Q35 = FIXTURES / "q35"


def text(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def write(path: Path, content: str) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(content)
    return path


def edited(tmp_path: Path, old: str, new: str, name: str = "tree.txt") -> Path:
    """q35's tree with ``old`` replaced (everywhere: a region prints once per block that
    reaches it)."""
    original = text(Q35 / "info-mtree-o-D.txt")
    assert old in original, old
    return write(tmp_path / name, original.replace(old, new))


def test_the_same_reading_is_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--color", "never", "diff", str(Q35), str(Q35)]) == 0
    out = capsys.readouterr().out
    assert "Regions: 0 added, 0 removed, 0 changed" in out and out.rstrip().endswith("SAME")


def test_address_space_order_is_not_a_difference(tmp_path: Path) -> None:
    # QEMU prints the address-space groups in hash order: move the first block last.
    blocks = text(Q35 / "info-mtree-o-D.txt").split("\r\n\r\n")
    assert len(blocks) > 3
    shuffled = write(
        tmp_path / "shuffled.txt", "\r\n\r\n".join(blocks[1:-1] + blocks[:1] + blocks[-1:])
    )
    assert main(["diff", str(Q35 / "info-mtree-o-D.txt"), str(shuffled)]) == 0


def test_a_changed_priority(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = edited(tmp_path, "(prio 4096, i/o): apic-msi", "(prio 4095, i/o): apic-msi")
    assert main(["--color", "never", "diff", str(Q35 / "info-mtree-o-D.txt"), str(tree)]) == 1
    out = capsys.readouterr().out
    assert "Regions: 0 added, 0 removed, 1 changed" in out
    assert re.search(
        r"~ system › apic-msi owner:\{dev path=/machine/unattached/device\[0\]/lapic\}"
        r"  priority: 4096 → 4095",
        out,
    )
    # A priority is no part of QEMU's flatrange_equal: no FlatView changes.
    assert "FlatViews: 0 groups" in out


def test_a_removed_region_and_its_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = next(
        ln for ln in text(Q35 / "info-mtree-o-D.txt").split("\r\n") if "(prio 0, i/o): hpet " in ln
    )
    tree = edited(tmp_path, line + "\r\n", "")
    assert (
        main(
            [
                "--color",
                "never",
                "diff",
                "--format",
                "json",
                str(Q35 / "info-mtree-o-D.txt"),
                str(tree),
            ]
        )
        == 1
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "qmirror.diff/1" and doc["result"] == "different"
    assert [r["path"] for r in doc["regions"]["removed"]] == ["system › hpet"]
    assert doc["regions"]["removed"][0]["addr"] == "0x00000000fed00000"
    memory = next(v for v in doc["flatviews"] if "memory" in v["address_spaces"])
    assert [r["name"] for r in memory["removed"]] == ["hpet"] and memory["added"] == []
    assert memory["removed"][0]["start"] == "0x00000000fed00000"
    # cpu-smm-0 sees system too: the same change, reported for it as well.
    assert any("cpu-smm-0" in v["address_spaces"] for v in doc["flatviews"])


def test_ignore_rules(tmp_path: Path) -> None:
    old = read(text(Q35 / "info-mtree-o-D.txt"))
    new = read(text(edited(tmp_path, "(prio 4096, i/o): apic-msi", "(prio 4095, i/o): apic-msi")))
    assert not snapdiff.diff_readings(old, new).same
    by_field = snapdiff.diff_readings(old, new, IgnoreRules.parse(fields=["priority"]))
    assert by_field.same and by_field.ignored == 1
    by_name = snapdiff.diff_readings(old, new, IgnoreRules.parse(regions=["^apic"]))
    assert by_name.same and by_name.ignored == 1
    tree = tmp_path / "tree.txt"
    assert (
        main(["diff", str(Q35 / "info-mtree-o-D.txt"), str(tree), "--ignore-field", "priority"])
        == 0
    )


def test_trouble_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["diff", str(Q35), "/nonexistent/dir"]) == 2
    assert main(["diff", str(Q35)]) == 2
    assert "expected 2 TARGETs" in capsys.readouterr().err
    bad = write(tmp_path / "bad.txt", "address-space: memory\r\n  nonsense\r\n")
    assert main(["diff", str(Q35), str(bad)]) == 2
    assert "bad.txt:2:" in capsys.readouterr().err


@pytest.mark.qemu
@pytest.mark.slow
async def test_one_vm_before_and_after_firmware(
    tmp_path: Path, qemu_binary: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["-machine", "pc", "-nic", "none", "-device", "e1000,id=nic0"]
    async with QemuInstance(args, binary=qemu_binary) as vm:
        before = await take_snapshot(vm.monitor, label="before")
        await vm.monitor.execute("cont")
        await asyncio.sleep(3)
        await vm.monitor.execute("stop")
        after = await take_snapshot(vm.monitor, label="after")
    save(before, tmp_path / "before")
    save(after, tmp_path / "after")
    # What QEMU itself says SeaBIOS mapped for the e1000.
    bar = re.search(
        r"^  ([0-9a-f]{16})-([0-9a-f]{16}) \(prio 1, i/o\): e1000-mmio ", after.flat, re.M
    )
    assert bar is not None and "e1000-mmio" not in before.flat
    code = main(
        ["--color", "never", "diff", "--all", str(tmp_path / "before"), str(tmp_path / "after")]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(
        rf"\+ system › pci › e1000-mmio  i/o 128 KiB @0x{int(bar[1], 16):x} prio 1 "
        r"owner:\{dev id=nic0\}",
        out,
    )
    assert f"+ {bar[1]}-{bar[2]} (i/o): e1000-mmio" in out
    # The PAM windows were reprogrammed: region changes, counted rather than repeated.
    assert re.search(
        r"~ system › pam-\w+ owner:\{dev path=/machine/i440fx\}  enabled: "
        r"(yes → no|no → yes) \(×\d+\)",
        out,
    )
    d = snapdiff.diff_readings(from_snapshot(before), from_snapshot(after))
    assert not d.same
