"""Terminal output: the region tree (`qmirror tree`) and the check report's mismatch table.

Expected values are read off QEMU's own texts in the fixtures (or derived by hand from
them), never produced by the code under test.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from qmirror.cli import main
from qmirror.cli._progress import Work, wants_progress
from qmirror.core.units import human_size
from qmirror.verify.reading import read
from qmirror.views.treeview import build_tree


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def _capable_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich reads TERM and COLUMNS: these tests choose colour and width themselves, so
    the runner's terminal (TERM=dumb, or none, in CI and chroots) must not decide."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("COLUMNS", raising=False)


def text_of(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (0xA0000, "640 KiB"),
        (0x7FF00000, "2047 MiB"),
        (1 << 30, "1 GiB"),
        (1 << 64, "16 EiB"),
    ],
)
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_tree_shows_kinds_sizes_aliases_and_disabled(capsys: pytest.CaptureFixture[str]) -> None:
    # From q35's `info mtree -o -D`: ram-below-4g is an alias of pc.ram, 128 MiB; the
    # PAM windows start disabled; apic-msi has priority 4096; pci has priority -1.
    code = main(["--color", "never", "tree", str(FIXTURES / "q35"), "--as", "memory"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("q35 (pc-q35-7.2, QEMU 7.2.22, tcg)")
    assert any("ram-below-4g  alias  128 MiB  → pc.ram @0x0" in ln for ln in lines)
    assert any("pci  container  16 EiB  prio -1" in ln for ln in lines)
    assert any("apic-msi  i/o  1 MiB  prio 4096" in ln for ln in lines)
    assert any("pam-ram [disabled]  alias  16 KiB  prio 1  → pc.ram @0xc0000" in ln for ln in lines)
    # Only the "memory" group (and regions reached from it), not I/O.
    assert "address-space: I/O" not in out and "address-space: cpu-memory-0, memory" in out
    assert "memory-region: pc.ram" in out
    # Never cut when piped: the longest line is longer than the 80 columns of a pipe.
    assert max(len(ln) for ln in lines) > 80


def test_tree_greys_disabled_regions_in_colour() -> None:
    reading = read(text_of(FIXTURES / "q35" / "info-mtree-o-D.txt"))
    console = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=200)
    console.print(build_tree(reading.machine, address_spaces=("memory",), owners=True))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    line = next(ln for ln in out.splitlines() if "smbase-blackhole" in ln)
    assert "\x1b[2m" in line  # dim
    assert "owner:{dev path=/machine/q35/mch}" in ANSI.sub("", line)


def test_tree_depth_and_hide_disabled(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--color",
            "never",
            "tree",
            str(FIXTURES / "q35"),
            "--as",
            "memory",
            "--depth",
            "1",
            "--hide-disabled",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "[disabled]" not in out
    assert "… 4 subregions" in out  # pci's children: vga-lowmem, pc.rom, isa-bios, pc.bios


def test_tree_of_text_files_and_unknown_address_space(capsys: pytest.CaptureFixture[str]) -> None:
    tree, flat = FIXTURES / "pc" / "info-mtree.txt", FIXTURES / "pc" / "info-mtree-f.txt"
    assert main(["--color", "never", "tree", f"{tree},{flat}", "--as", "I/O"]) == 0
    assert "address-space: I/O" in capsys.readouterr().out
    assert main(["--color", "never", "tree", str(tree), "--as", "nope"]) == 2
    assert "no address space named nope" in capsys.readouterr().err


def test_tree_refuses_a_flat_text_as_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tree", str(FIXTURES / "pc" / "info-mtree-f.txt")]) == 2
    assert "is `info mtree -f` output" in capsys.readouterr().err


def perturbed_q35(tmp_path: Path) -> tuple[Path, Path]:
    directory = FIXTURES / "q35"
    text = text_of(directory / "info-mtree-o-D.txt")
    needle = "(prio 4096, i/o): apic-msi"
    assert needle in text
    tree = tmp_path / "tree.txt"
    with open(tree, "w", encoding="utf-8", newline="") as f:
        f.write(text.replace(needle, "(prio 4095, i/o): apic-msi"))
    return tree, directory / "info-mtree-f-o.txt"


def test_check_shows_ranges_side_by_side_with_the_differing_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree, flat = perturbed_q35(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    code = main(["--color", "auto", "check", "--tree", str(tree), "--flat", str(flat)])
    out = capsys.readouterr().out
    assert code == 1
    row = next(ln for ln in out.splitlines() if "fee00000" in ln and "apic-msi" in ln)
    # QEMU's side and ours on one row; only the priority is highlighted, red then green.
    assert "\x1b[1;31mprio 4096\x1b[0m" in row and "\x1b[1;32mprio 4095\x1b[0m" in row
    plain = ANSI.sub("", row)
    assert re.search(
        r"fee00000 +feefffff prio 4096 i/o apic-msi +feefffff prio 4095 i/o "
        r"apic-msi",
        plain,
    )
    # The deciding path, on its own line.
    assert "priority differ; ours comes from system › apic-msi (prio 4095)" in ANSI.sub("", out)


def test_no_color_is_honoured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree, flat = perturbed_q35(tmp_path)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["check", "--tree", str(tree), "--flat", str(flat)]) == 1
    assert "\x1b[3" not in capsys.readouterr().out  # no colour (bold may stay)
    monkeypatch.delenv("NO_COLOR")
    assert main(["--color", "never", "check", "--tree", str(tree), "--flat", str(flat)]) == 1
    assert "\x1b[" not in capsys.readouterr().out


def test_a_long_mismatch_is_summarised(capsys: pytest.CaptureFixture[str]) -> None:
    # Strict and without rules, q35's I/O view misses the `io` root's own ranges (it
    # terminates: rule io-root-terminates); they are listed once, not 29 times.
    d = FIXTURES / "q35"
    code = main(
        [
            "--color",
            "never",
            "check",
            "--strict",
            "--no-rules",
            "--tree",
            str(d / "info-mtree-o-D.txt"),
            "--flat",
            str(d / "info-mtree-f-o.txt"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"#1–\d+: QEMU has a range there and our model renders nothing", out)
    # No line ends in blanks (tables are trimmed in pipes and files).
    assert not [ln for ln in out.splitlines() if ln != ln.rstrip()]


def test_progress_is_silent_off_a_terminal() -> None:
    quiet = Console(file=io.StringIO())
    assert not wants_progress(quiet)
    with Work(quiet, total=3, what="reading") as work:
        for n in range(3):
            work.step(f"step {n}")
        work.done()
    assert quiet.file.getvalue() == ""  # type: ignore[attr-defined]
    loud = Console(file=io.StringIO(), force_terminal=True, force_interactive=True)
    assert wants_progress(loud)
    with Work(loud, total=2, what="reading") as work:
        work.step("reading a")
        work.step("reading b")
        work.done()
    assert "reading" in loud.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.qemu
def test_tree_of_a_live_vm(qemu_binary: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--color",
            "never",
            "tree",
            "--as",
            "memory",
            "--owners",
            "--launch",
            "--",
            qemu_binary,
            "-machine",
            "q35",
            "-nic",
            "none",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"launch:{qemu_binary} -machine q35 -nic none (pc-q35-")
    assert "ram-below-4g  alias" in out and "owner:{dev path=/machine/q35/mch}" in out
