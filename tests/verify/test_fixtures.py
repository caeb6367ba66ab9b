"""Every fixture captured from real QEMU: render == QEMU, round trips, exit codes.

A fixture directory holds one VM's ``info mtree`` (tree), ``info mtree -o -D``,
``info mtree -f`` and ``info mtree -f -o``, captured by ``scripts/capture-fixtures``.
The expected output is always QEMU's own text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qmirror.cli import main
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.tree import parse_tree_document, print_like
from qmirror.verify.check import check, load_tree


ROOT = Path(__file__).resolve().parents[2] / "fixtures"
TREES = ("info-mtree.txt", "info-mtree-o-D.txt")
#: Which flat text goes with which tree text: the owners must agree to compare them.
FLAT_FOR = {"info-mtree.txt": "info-mtree-f.txt", "info-mtree-o-D.txt": "info-mtree-f-o.txt"}


def fixture_dirs() -> list[Path]:
    return sorted(p.parent for p in ROOT.glob("qemu-*/*/*/meta.json"))


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


DIRS = fixture_dirs()
PAIRS = [(d, t) for d in DIRS for t in TREES if (d / t).exists()]
PAIR_IDS = [f"{p.relative_to(ROOT)}/{t}" for p, t in PAIRS]


def read(path: Path) -> str:
    """A captured text exactly as QEMU sent it (CR LF kept)."""
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def test_there_are_enough_x86_fixtures() -> None:
    x86 = [d for d in DIRS if d.parent.name == "x86_64"]
    assert len(x86) >= 12, f"only {len(x86)} x86 fixtures under {ROOT}"
    metas = [json.loads((d / "meta.json").read_text()) for d in x86]
    assert any(m.get("boot_seconds") for m in metas), "no fixture of a booted VM"


@pytest.mark.parametrize("directory", DIRS, ids=ids(DIRS))
def test_fixture_is_complete_and_records_its_provenance(directory: Path) -> None:
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["command_line"] and isinstance(meta["command_line"], list)
    assert "qemu_version" in meta
    for name in ("info-mtree.txt", "info-mtree-o-D.txt", "info-mtree-f.txt",
                 "info-mtree-f-o.txt"):
        assert (directory / name).exists(), name


@pytest.mark.parametrize(("directory", "tree"), PAIRS, ids=PAIR_IDS)
def test_tree_round_trips_byte_for_byte(directory: Path, tree: str) -> None:
    text = read(directory / tree)
    doc = parse_tree_document(text)
    machine = load_tree(text, rules=False).machine
    assert print_like(machine, doc) == text


@pytest.mark.parametrize("directory", DIRS, ids=ids(DIRS))
def test_flat_round_trips_byte_for_byte(directory: Path) -> None:
    for name in ("info-mtree-f.txt", "info-mtree-f-o.txt"):
        text = read(directory / name)
        assert print_flat(parse_flat(text)) == text


def _failures(tree_text: str, flat_text: str, **kw: object) -> list[object]:
    result = check(tree_text, flat_text, **kw)  # type: ignore[arg-type]
    return [(v.address_spaces[:3], v.status, [(hex(d.start), d.kind, d.fields, d.explanation)
                                              for d in v.diffs][:4])
            for v in result.comparison.views if not v.ok]


@pytest.mark.parametrize(("directory", "tree"), PAIRS, ids=PAIR_IDS)
def test_renders_exactly_with_the_rule_table_alone(directory: Path, tree: str) -> None:
    """Strict: no inference from QEMU's -f; the tree, the rules and the defaults only
    (no harvested facts either: tests/rebuild/test_harvest.py checks those)."""
    problems = _failures(read(directory / tree), read(directory / FLAT_FOR[tree]), strict=True,
                         harvested=False)
    assert not problems, problems


@pytest.mark.parametrize(("directory", "tree"), PAIRS, ids=PAIR_IDS)
def test_renders_exactly_with_inference_alone(directory: Path, tree: str) -> None:
    """The safety net: without the rule table, evidence from QEMU's -f decides the gaps."""
    problems = _failures(read(directory / tree), read(directory / FLAT_FOR[tree]), rules=False)
    assert not problems, problems


@pytest.mark.parametrize("directory", DIRS, ids=ids(DIRS))
def test_cli_check_exits_0(directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--color", "never", "check", "--tree", str(directory / "info-mtree-o-D.txt"),
                 "--flat", str(directory / "info-mtree-f-o.txt")])
    assert code == 0, capsys.readouterr().out


def test_a_perturbed_priority_fails_and_the_report_names_the_region(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Change one region's priority in a real q35 tree: exit 1, and the region is named."""
    directory = next(d for d in DIRS if d.name == "q35")
    text = read(directory / "info-mtree-o-D.txt")
    needle = "(prio 4096, i/o): apic-msi"
    assert needle in text
    perturbed = tmp_path / "tree.txt"
    with open(perturbed, "w", encoding="utf-8", newline="") as f:
        f.write(text.replace(needle, "(prio 4095, i/o): apic-msi"))
    code = main(["--color", "never", "check", "--tree", str(perturbed),
                 "--flat", str(directory / "info-mtree-f-o.txt")])
    out = capsys.readouterr().out
    assert code == 1
    assert "priority differ" in out and "apic-msi (prio 4095)" in out
