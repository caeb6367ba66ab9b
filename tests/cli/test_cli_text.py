"""``qmirror check/render/format`` on texts: dialects, lenient reading, ignore rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmirror.cli import main


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
Q35 = FIXTURES / "qemu-7.2" / "x86_64" / "q35"


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def write(path: Path, text: str) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return path


def run(*argv: str) -> int:
    return main(["--color", "never", *argv])


def test_check_reads_a_pasted_dump_leniently_and_says_what_it_repaired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pasted = write(
        tmp_path / "tree.txt", "(qemu) info mtree -o -D\r\n" + read(Q35 / "info-mtree-o-D.txt")
    )
    flat = str(Q35 / "info-mtree-f-o.txt")
    assert run("check", "--tree", str(pasted), "--flat", flat) == 2
    err = capsys.readouterr().err
    assert "tree.txt:1:1" in err
    assert run("check", "--lenient", "--tree", str(pasted), "--flat", flat) == 0
    assert "tree.txt:1: repaired: monitor prompt" in capsys.readouterr().err


def test_a_given_qemu_version_is_held_to(capsys: pytest.CaptureFixture[str]) -> None:
    """7.2's grouped headers are not what QEMU 5.1 prints: trouble, with the line."""
    code = run(
        "check",
        "--qemu-version",
        "5.1",
        "--tree",
        str(Q35 / "info-mtree.txt"),
        "--flat",
        str(Q35 / "info-mtree-f.txt"),
    )
    assert code == 2
    assert "QEMU 7.0+ output" in capsys.readouterr().err


def test_render_prints_the_flat_text_of_an_older_qemu(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    assert run("render", "--print-as", "2.9", "--tree", str(Q35 / "info-mtree.txt")) == 0
    out = capsysbinary.readouterr().out.decode()
    assert out.startswith("address-space (flat view): ")
    assert "FlatView #" not in out


def test_ignore_rules_from_the_environment_apply_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = read(Q35 / "info-mtree-o-D.txt").replace(
        "(prio 4096, i/o): apic-msi", "(prio 4095, i/o): apic-msi"
    )
    tree = write(tmp_path / "tree.txt", text)
    flat = str(Q35 / "info-mtree-f-o.txt")
    assert run("check", "--tree", str(tree), "--flat", flat) == 1
    capsys.readouterr()
    monkeypatch.setenv("QMIRROR_IGNORE_REGIONS", "apic-msi")
    monkeypatch.chdir(tmp_path)  # no pyproject.toml with settings above it
    assert run("check", "--tree", str(tree), "--flat", flat) == 0
    assert "left out by the ignore rules" in capsys.readouterr().err
