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
from qmirror.text.dialect import for_version
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.tree import parse_tree_document, print_like, print_tree
from qmirror.verify.check import check, load_tree


ROOT = Path(__file__).resolve().parents[2] / "fixtures"
TREES = ("info-mtree.txt", "info-mtree-o-D.txt")
#: Which flat text goes with which tree text: the owners must agree to compare them.
FLAT_FOR = {"info-mtree.txt": "info-mtree-f.txt", "info-mtree-o-D.txt": "info-mtree-f-o.txt"}


def fixture_dirs() -> list[Path]:
    return sorted(p.parent for p in ROOT.glob("qemu-*/*/*/meta.json"))


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


#: The QEMU versions whose fixtures CI must have (scripts/qemu-matrix provides them).
VERSIONS = ("5.2", "7.2", "10.0", "11")

# Known failures, per test and fixture (directory, or directory/tree): strict xfails, so
# a fix shows up. (Pre-7.0 trees print identical-looking roots of different address
# spaces alike; the sourced rules of qmirror.rebuild.identity tell apart the ones on the
# fixtures, which were the last entries here.)
KNOWN: dict[str, dict[str, str]] = {
    "rules": {},
    "inference": {},
    "cli": {},
}


def known(test: str, ident: str) -> list[pytest.MarkDecorator]:
    reason = KNOWN[test].get(ident)
    return [] if reason is None else [pytest.mark.xfail(strict=True, reason=reason)]


DIRS = fixture_dirs()
PAIRS = [(d, t) for d in DIRS for t in TREES if (d / t).exists()]
PAIR_IDS = [f"{p.relative_to(ROOT)}/{t}" for p, t in PAIRS]


def pairs_for(test: str) -> list[object]:
    return [
        pytest.param(d, t, id=i, marks=known(test, i))
        for (d, t), i in zip(PAIRS, PAIR_IDS, strict=True)
    ]


def test_every_qemu_version_has_its_fixtures() -> None:
    """x86_64 machines and aarch64/arm boards from each version CI runs."""
    for version in VERSIONS:
        roots = sorted(ROOT.glob(f"qemu-{version}")) + sorted(ROOT.glob(f"qemu-{version}.*"))
        assert roots, f"no fixtures/qemu-{version}*/"
        root = roots[-1]
        x86 = [d for d in DIRS if d.parent == root / "x86_64"]
        assert len(x86) >= 30, f"only {len(x86)} x86_64 fixtures under {root}"
        for board in ("aarch64/virt", "arm/vexpress-a9"):
            assert (root / board / "meta.json").exists(), f"{root}/{board}"
        for d in x86:
            meta = json.loads((d / "meta.json").read_text())
            assert meta["qemu_version"].startswith(root.name.removeprefix("qemu-") + ".")
            assert meta["qemu_package"] and meta["command_line"]


@pytest.mark.parametrize(("directory", "tree"), PAIRS, ids=PAIR_IDS)
def test_dialect_detected_from_the_text_is_the_versions(directory: Path, tree: str) -> None:
    """Auto-detection on real output, plain `info mtree` included: the version's own
    dialect, or one that prints this text identically (no evidence tells them apart)."""
    truth = for_version(json.loads((directory / "meta.json").read_text())["qemu_version"])
    text = read(directory / tree)
    doc = parse_tree_document(text)
    if doc.dialect != truth:
        assert not doc.detection.evidence, (str(doc.detection), str(truth))
        machine = load_tree(text, rules=False).machine
        assert (
            print_tree(
                machine, owners=doc.owners, disabled=doc.shows_disabled, eol=doc.eol, dialect=truth
            )
            == text
        )
    flat = parse_flat(read(directory / FLAT_FOR[tree])).dialect
    assert (flat.flat, flat.accel_word) == (truth.flat, truth.accel_word)


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
    for name in ("info-mtree.txt", "info-mtree-o-D.txt", "info-mtree-f.txt", "info-mtree-f-o.txt"):
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
    return [
        (
            v.address_spaces[:3],
            v.status,
            [(hex(d.start), d.kind, d.fields, d.explanation) for d in v.diffs][:4],
        )
        for v in result.comparison.views
        if not v.ok
    ]


@pytest.mark.parametrize(("directory", "tree"), pairs_for("rules"))
def test_renders_exactly_with_the_rule_table_alone(directory: Path, tree: str) -> None:
    """Strict: no inference from QEMU's -f; the tree, the rules and the defaults only
    (no harvested facts either: tests/rebuild/test_harvest.py checks those)."""
    problems = _failures(
        read(directory / tree), read(directory / FLAT_FOR[tree]), strict=True, harvested=False
    )
    assert not problems, problems


@pytest.mark.parametrize(("directory", "tree"), pairs_for("inference"))
def test_renders_exactly_with_inference_alone(directory: Path, tree: str) -> None:
    """The safety net: without the rule table, evidence from QEMU's -f decides the gaps."""
    problems = _failures(read(directory / tree), read(directory / FLAT_FOR[tree]), rules=False)
    assert not problems, problems


@pytest.mark.parametrize(
    "directory",
    [pytest.param(d, id=i, marks=known("cli", i)) for d, i in zip(DIRS, ids(DIRS), strict=True)],
)
def test_cli_check_exits_0(directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--color",
            "never",
            "check",
            "--tree",
            str(directory / "info-mtree-o-D.txt"),
            "--flat",
            str(directory / "info-mtree-f-o.txt"),
        ]
    )
    assert code == 0, capsys.readouterr().out


def test_a_perturbed_priority_fails_and_the_report_names_the_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Change one region's priority in a real q35 tree: exit 1, and the region is named."""
    directory = next(d for d in DIRS if d.name == "q35")
    text = read(directory / "info-mtree-o-D.txt")
    needle = "(prio 4096, i/o): apic-msi"
    assert needle in text
    perturbed = tmp_path / "tree.txt"
    with open(perturbed, "w", encoding="utf-8", newline="") as f:
        f.write(text.replace(needle, "(prio 4095, i/o): apic-msi"))
    code = main(
        [
            "--color",
            "never",
            "check",
            "--tree",
            str(perturbed),
            "--flat",
            str(directory / "info-mtree-f-o.txt"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "priority differ" in out and "apic-msi (prio 4095)" in out
