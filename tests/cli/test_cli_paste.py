"""Every text command takes a paste (issue 15): ``-`` for stdin, repairs on stderr and
in JSON, elisions in re-prints, partial renders said so.

The pastes are HAND-MADE in the test from QEMU 7.2 captures (quoted, elided, cut).
"""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from qmirror.cli import main


PC = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64" / "pc"


def lines(name: str) -> list[str]:
    with open(PC / name, encoding="utf-8", newline="") as f:
        return f.read().split("\r\n")[:-1]


def paste() -> str:
    """The pc tree as a mail quotes it, with a prompt and one elision."""
    tree = lines("info-mtree.txt")
    at = tree.index("address-space: memory")
    cut = [*tree[: at + 6], "    ...", *tree[at + 9 :]]
    return "> (qemu) info mtree\n" + "".join(f"> {ln}\n" for ln in cut)


def run(*argv: str) -> int:
    return main(["--color", "never", *argv])


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


def test_tree_reads_a_paste_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, paste())
    assert run("tree", "-") == 0
    out, err = capsys.readouterr()
    assert "pc.ram" in out and "cpu-memory-0, memory" in out
    assert "stdin:1: repaired: monitor or shell prompt dropped" in err
    assert "partial" in err


def test_format_reprints_the_paste_with_its_elision(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = tmp_path / "paste.txt"
    path.write_text(paste(), encoding="utf-8")
    assert run("format", "--tree", str(path)) == 0
    cap = capsysbinary.readouterr()
    out = cap.out.decode()
    assert "\n    ...\n" in out and "(qemu)" not in out and "> " not in out
    assert b"paste.txt:4: quoting removed" in cap.err or b"quoting removed" in cap.err


def test_render_says_which_views_are_partial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "paste.txt"
    path.write_text(paste(), encoding="utf-8")
    assert run("render", "--tree", str(path)) == 0
    err = capsys.readouterr().err
    assert "partial: the FlatViews of cpu-memory-0, memory may miss ranges" in err


def test_ram_map_json_lists_the_repairs(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = tmp_path / "paste.txt"
    path.write_text(paste(), encoding="utf-8")
    assert run("ram-map", str(path)) == 0
    doc = json.loads(capsysbinary.readouterr().out)
    assert doc["partial"] is True
    assert {
        "file": str(path),
        "line": 1,
        "what": "monitor or shell prompt dropped: '(qemu) info mtree'",
    } in doc["repairs"]
    assert any(r["block"] == "pc.ram" for r in doc["ranges"])


def test_intact_output_has_no_repairs_in_json(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert run("ram-map", str(PC / "info-mtree.txt")) == 0
    doc = json.loads(capsysbinary.readouterr().out)
    assert "repairs" not in doc and "partial" not in doc


def test_diff_between_two_pastes(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    old = tmp_path / "old.txt"
    old.write_text(paste(), encoding="utf-8")
    new = tmp_path / "new.txt"
    new.write_text(
        paste().replace("(prio 1, rom): pc.rom", "(prio 1, ram): pc.rom"), encoding="utf-8"
    )
    assert run("diff", "--format", "json", str(old), str(new)) == 1
    doc = json.loads(capsysbinary.readouterr().out)
    assert doc["old"]["partial"] and doc["new"]["repairs"]
    assert {c["path"].split(" › ")[-1] for c in doc["regions"]["changed"]} == {"pc.rom"}


def test_stdin_only_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("diff", "-", "-") == 2
    assert "standard input (-) can be read only once" in capsys.readouterr().err


def test_a_flat_paste_given_as_tree_is_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "flat.txt"
    path.write_text("".join(f"> {ln}\n" for ln in lines("info-mtree-f.txt")), encoding="utf-8")
    assert run("tree", str(path)) == 2
    assert (
        "no tree text (`info mtree`) found: this is `info mtree -f` output"
        in capsys.readouterr().err
    )


def test_map_and_ram_map_take_a_flat_paste_alone(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """A `-f` paste is enough for the commands that need only FlatViews; its RAM
    ranges come out as QEMU printed them (start, size, region, offset)."""
    flat = lines("info-mtree-f.txt")
    path = tmp_path / "flat.txt"
    path.write_text("(qemu) info mtree -f\n" + "".join(f"{ln}\n" for ln in flat), encoding="utf-8")
    assert run("ram-map", str(path)) == 0
    doc = json.loads(capsysbinary.readouterr().out)
    assert doc["partial"] is True
    got = {
        (int(r["start"], 16), int(r["size"], 16), r["region"], int(r["block_offset"], 16))
        for r in doc["ranges"]
        if "memory" in r["address_spaces"]
    }
    start = flat.index(' AS "memory", root: system')
    view = flat[start : flat.index("", start)]
    want = set()
    for ln in view:
        m = re.match(
            r"  ([0-9a-f]{16})-([0-9a-f]{16}) \(prio -?\d+, (?:ram|rom)\): "
            r"(\S+)(?: @([0-9a-f]{16}))?",
            ln,
        )
        if m:
            want.add((int(m[1], 16), int(m[2], 16) - int(m[1], 16) + 1, m[3], int(m[4] or "0", 16)))
    assert want and got == want
    assert run("map", "--svg", str(tmp_path / "m.svg"), str(path)) == 0
    assert run("tree", str(path)) == 2  # a tree needs the tree text


def test_check_json_lists_the_repairs_of_a_lenient_reading(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = tmp_path / "tree.txt"
    path.write_text("".join(f"> {ln}\n" for ln in lines("info-mtree.txt")), encoding="utf-8")
    flat = str(PC / "info-mtree-f.txt")
    assert run("check", "--lenient", "--format", "json", "--tree", str(path), "--flat", flat) == 0
    doc = json.loads(capsysbinary.readouterr().out)
    assert doc["repairs"][0] == {
        "file": str(path),
        "line": 1,
        "what": "'> ' quoting removed from every line",
    }
    assert doc["partial"] is False
    assert (
        run("check", "--format", "json", "--tree", str(PC / "info-mtree.txt"), "--flat", flat) == 0
    )
    assert "repairs" not in json.loads(capsysbinary.readouterr().out)
