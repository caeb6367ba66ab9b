"""Snapshot directories and the model as JSON, on the captured fixtures (no QEMU needed).

Round trips are judged against QEMU's own texts: a model written to JSON and read back
must print QEMU's tree byte for byte and render the same FlatViews.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

import qmirror.live.snapshot as snapshot_module
from qmirror.cli import main
from qmirror.core.modeljson import SCHEMA, machine_from_json, machine_to_json
from qmirror.core.render import render_machine
from qmirror.errors import ModelError, QmirrorError
from qmirror.live.snapshot import Snapshot, load, save
from qmirror.text.tree import parse_tree_document, print_tree
from qmirror.verify.check import check


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DIRS = sorted(p.parent for p in FIXTURES.glob("qemu-*/*/*/meta.json"))
IDS = [str(d.relative_to(FIXTURES)) for d in DIRS]
PAIRS = (("info-mtree-o-D.txt", "info-mtree-f-o.txt"), ("info-mtree.txt", "info-mtree-f.txt"))


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def views_of(machine: Any) -> list[list[tuple[int, int, str, int, bool]]]:
    return [
        [(r.start, r.size, r.mr.label, r.offset_in_region, r.readonly) for r in v.ranges]
        for v in render_machine(machine)
    ]


# ----------------------------------------------------------------- model JSON


@pytest.mark.parametrize("directory", DIRS, ids=IDS)
def test_model_json_round_trip(directory: Path) -> None:
    for tree_name, flat_name in PAIRS:
        tree = read(directory / tree_name)
        result = check(tree, read(directory / flat_name))
        doc = machine_to_json(result.machine)
        back = machine_from_json(json.loads(json.dumps(doc)))
        parsed = parse_tree_document(tree)
        assert (
            print_tree(
                back,
                owners=parsed.owners,
                disabled=parsed.shows_disabled,
                eol=parsed.eol,
                dialect=parsed.dialect,
            )
            == tree
        )
        assert views_of(back) == views_of(result.machine)
        assert machine_to_json(back) == doc


def test_model_json_shape() -> None:
    q35 = FIXTURES / "qemu-7.2/x86_64/q35"
    result = check(read(q35 / "info-mtree-o-D.txt"), read(q35 / "info-mtree-f-o.txt"))
    doc = machine_to_json(result.machine)
    assert doc["schema"] == SCHEMA and doc["accel"] == "tcg"
    regions = {r["id"]: r for r in doc["regions"]}
    assert [r["id"] for r in doc["regions"]] == [f"r{n}" for n in range(len(regions))]
    system = next(r for r in doc["regions"] if r["name"] == "system")
    assert system["size"] == "0x10000000000000000" and system["kind"] == "container"
    for r in doc["regions"]:
        for key in ("addr", "size", "alias_offset"):
            assert r[key].startswith(("0x", "-0x")) and len(r[key].lstrip("-")) >= 18
        assert isinstance(r["priority"], int)
        for child in r["subregions"]:
            assert regions[child]["container"] == r["id"]
        if r["alias"] is not None:
            assert r["kind"] == "alias" and r["alias"] in regions
    # Provenance comes along: the rule that made pam-rom aliases read-only.
    pam = [r for r in doc["regions"] if r["name"] == "pam-rom" and r["facts"]]
    assert pam and pam[0]["facts"][0]["source"] == "rule"
    # Subregion order is QEMU's list order (priority descending).
    prios = [regions[c]["priority"] for c in system["subregions"]]
    assert prios == sorted(prios, reverse=True)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema="something/9"), "schema is 'something/9'"),
        (lambda d: d["regions"][1].update(kind="blob"), r"regions\[1\]\.kind is 'blob'"),
        (lambda d: d["regions"][2].update(size="12"), r"regions\[2\]\.size is not a hex number"),
        (lambda d: d["regions"][0]["subregions"].append("r99999"), "unknown region 'r99999'"),
        (lambda d: d["address_spaces"][0].update(root="nope"), "unknown region 'nope'"),
        (lambda d: d["regions"][3].pop("enabled"), r"regions\[3\] has no 'enabled'"),
        (lambda d: d["regions"][3].update(enabled=1), r"regions\[3\]\.enabled is 1"),
    ],
)
def test_model_json_errors_say_where(mutate: Any, message: str) -> None:
    pc = FIXTURES / "qemu-7.2/x86_64/pc"
    doc = machine_to_json(
        check(read(pc / "info-mtree-o-D.txt"), read(pc / "info-mtree-f-o.txt")).machine
    )
    mutate(doc)
    with pytest.raises(ModelError, match=message):
        machine_from_json(doc)


# ------------------------------------------------------------ directories


def test_fixture_directory_loads_as_a_snapshot() -> None:
    snap = load(FIXTURES / "qemu-7.2/x86_64/pc-booted")
    assert snap.info is not None
    assert snap.info["machine"] == "pc-i440fx-7.2" and snap.info["accelerator"] == "tcg"
    assert snap.info["qemu_version_tuple"][:2] == (7, 2)
    assert snap.boot_seconds is not None and snap.command_line[0].startswith("qemu-system")
    assert snap.tree.startswith("address-space: ") and snap.flat.startswith("FlatView #")


def test_save_load_byte_exact(short_tmp: Path) -> None:
    source = FIXTURES / "qemu-7.2/x86_64/q35-booted"
    snap = load(source)
    out = save(snap, short_tmp / "copy")
    for name in ("info-mtree.txt", "info-mtree-o-D.txt", "info-mtree-f.txt", "info-mtree-f-o.txt"):
        assert (out / name).read_bytes() == (source / name).read_bytes()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["schema"] == "qmirror.snapshot/1" and meta["check"] == {"result": "match"}
    for name, info in meta["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == info["sha256"]
    again = load(out)
    assert (again.tree, again.flat, again.tree_plain, again.flat_plain) == (
        snap.tree,
        snap.flat,
        snap.tree_plain,
        snap.flat_plain,
    )
    assert again.info == snap.info
    model = machine_from_json(json.loads((out / "model.json").read_text()))
    assert print_tree(model, owners=True, disabled=True) == snap.tree


def _snap() -> Snapshot:
    return load(FIXTURES / "qemu-7.2/x86_64/pc")


def test_save_refuses_to_clobber(short_tmp: Path) -> None:
    busy = short_tmp / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(QmirrorError, match="not empty"):
        save(_snap(), busy)
    with pytest.raises(
        QmirrorError,
        match="not replaced: it holds files qmirror snapshot "
        r"does not write \(notes\.txt\)",
    ):
        save(_snap(), busy, overwrite=True)
    assert (busy / "notes.txt").read_text() == "mine"
    empty = short_tmp / "empty"
    empty.mkdir()
    save(_snap(), empty)
    assert (empty / "meta.json").is_file()
    save(_snap(), empty, overwrite=True)
    assert sorted(p.name for p in short_tmp.iterdir()) == ["busy", "empty"]


def _tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(directory.rglob("*"))
    }


def test_force_replaces_only_what_qmirror_wrote(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17 defect 2: --force used to delete any directory with a meta.json in it."""
    pc = str(FIXTURES / "qemu-7.2/x86_64/pc")
    # Someone else's directory that happens to hold a meta.json, plus their files.
    theirs = short_tmp / "theirs"
    (theirs / "sub").mkdir(parents=True)
    (theirs / "meta.json").write_text('{"owner": "someone else"}')
    (theirs / "thesis.tex").write_text("five years of work")
    (theirs / "sub" / "data.bin").write_bytes(b"\0\1")
    # A capture directory (scripts/capture-fixtures): a meta.json of another schema.
    capture = short_tmp / "capture"
    capture.mkdir()
    for f in (FIXTURES / "qemu-7.2/x86_64/pc").iterdir():
        (capture / f.name).write_bytes(f.read_bytes())
    # A snapshot qmirror wrote, into which a user then put a file of their own.
    grown = save(_snap(), short_tmp / "grown")
    (grown / "notes.md").write_text("my notes on this VM")
    for victim, why in (
        (theirs, "holds files qmirror snapshot does not write"),
        (capture, "holds files|was not written by qmirror snapshot"),
        (grown, r"holds files qmirror snapshot does not write \(notes\.md\)"),
    ):
        before = _tree(victim)
        assert main(["--color", "never", "snapshot", pc, "--out", str(victim), "--force"]) == 2
        err = capsys.readouterr().err
        assert "not replaced" in err and len(err.splitlines()) == 1
        assert re.search(why, err), err
        assert _tree(victim) == before
    # What qmirror wrote is replaced, and nothing is left beside it.
    mine = save(_snap(), short_tmp / "mine")
    (mine / "info-mtree.txt").unlink()  # an older snapshot may lack the optional texts
    assert main(["--color", "never", "snapshot", pc, "--out", str(mine), "--force"]) == 0
    assert load(mine).tree == _snap().tree
    assert sorted(p.name for p in short_tmp.iterdir()) == ["capture", "grown", "mine", "theirs"]


def test_out_dot_in_an_empty_directory(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--out .` used to fail with "Device or resource busy" (renaming over the cwd)."""
    here = short_tmp / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    pc = str(FIXTURES / "qemu-7.2/x86_64/pc")
    assert main(["--color", "never", "snapshot", pc, "--out", "."]) == 0
    assert load(here).tree == _snap().tree
    names = {p.name for p in here.iterdir()}
    assert names <= snapshot_module.WRITTEN and {"meta.json", "model.json"} <= names
    assert sorted(p.name for p in short_tmp.iterdir()) == ["here"]
    # And again with --force: it is ours now.
    assert main(["--color", "never", "snapshot", pc, "--out", ".", "--force"]) == 0
    assert load(here).tree == _snap().tree


def test_save_is_all_or_nothing(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = snapshot_module._write_file

    def fail_on_model(path: Path, data: bytes) -> None:
        if path.name == "model.json":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(snapshot_module, "_write_file", fail_on_model)
    with pytest.raises(QmirrorError, match="No space left on device"):
        save(_snap(), short_tmp / "new")
    assert list(short_tmp.iterdir()) == []  # no directory, no leftovers
    monkeypatch.setattr(snapshot_module, "_write_file", real)
    old = save(_snap(), short_tmp / "old")
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    monkeypatch.setattr(snapshot_module, "_write_file", fail_on_model)
    with pytest.raises(QmirrorError):
        save(load(FIXTURES / "qemu-7.2/x86_64/q35"), old, overwrite=True)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert sorted(p.name for p in short_tmp.iterdir()) == ["old"]


def test_load_errors(short_tmp: Path) -> None:
    with pytest.raises(QmirrorError, match="not a snapshot directory"):
        load(short_tmp)
    (short_tmp / "meta.json").write_text("{}")
    (short_tmp / "info-mtree-o-D.txt").write_text("address-space: memory\r\n")
    with pytest.raises(
        QmirrorError,
        match=r"info-mtree-f-o\.txt \(info mtree -f -o\) is "
        "missing",
    ):
        load(short_tmp)
    (short_tmp / "info-mtree-f-o.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(QmirrorError, match="not UTF-8"):
        load(short_tmp)
    (short_tmp / "meta.json").write_text("{nope")
    with pytest.raises(QmirrorError, match=r"meta\.json:1:2"):
        load(short_tmp)
