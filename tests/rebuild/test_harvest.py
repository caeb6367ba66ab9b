"""Harvested facts (qmirror/rebuild/harvested/, made by scripts/harvest-rules).

The decisive test: facts harvested from VMs other than the one checked render every
captured fixture from the tree alone (hand-written rules + harvest, no inference from
``-f``). For each fixture the harvest's bare-machine VMs of the fixture's whole
architecture family are removed first (every board of qemu-system-mips, -mipsel,
-mips64, -mips64el for a malta fixture), so what remains comes from single-device VMs
and from other architectures' boards: a harvest never includes the VM being checked.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path

import pytest

from qmirror.cli import main
from qmirror.core.model import Source
from qmirror.rebuild import harvest
from qmirror.rebuild.harvest import HarvestTable, name_pattern
from qmirror.verify.check import check, load_tree


ROOT = Path(__file__).resolve().parents[2] / "fixtures"
FLAT_FOR = {"info-mtree.txt": "info-mtree-f.txt", "info-mtree-o-D.txt": "info-mtree-f-o.txt"}
DIRS = sorted(p.parent for p in ROOT.glob("qemu-*/*/*/meta.json"))


def known_rule_failures() -> dict[str, str]:
    """Fixtures the rule table alone is known not to render (tests/verify/test_fixtures.py
    ``KNOWN["rules"]``, where that list exists): the harvest may or may not cover them."""
    path = Path(__file__).resolve().parents[1] / "verify" / "test_fixtures.py"
    loader = importlib.machinery.SourceFileLoader("qmirror_test_fixtures_known", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    if spec is None:
        return {}
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    known = getattr(module, "KNOWN", {})
    return dict(known.get("rules", {})) if isinstance(known, dict) else {}


KNOWN_RULES = known_rule_failures()
PAIRS = [
    pytest.param(
        d,
        t,
        id=f"{d.relative_to(ROOT)}/{t}",
        marks=[
            pytest.mark.xfail(strict=False, reason="rule table alone known to fail: " + why)
            for why in [
                KNOWN_RULES.get(
                    f"{d.relative_to(ROOT)}/{t}", KNOWN_RULES.get(str(d.relative_to(ROOT)))
                )
            ]
            if why
        ],
    )
    for d in DIRS
    for t in FLAT_FOR
    if (d / t).exists()
]
VERSIONS = harvest.available_versions()


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def meta(directory: Path) -> dict[str, object]:
    data = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def version_of(directory: Path) -> str:
    return directory.parts[-3].removeprefix("qemu-")


def table_without_own_machines(directory: Path) -> HarvestTable:
    """The fixture's version's table minus every bare-machine VM of its architecture
    family: single-device VMs and other architectures' boards only."""
    version = directory.parts[-3].removeprefix("qemu-")
    table = harvest.table_for(version)
    assert table is not None, "no harvested table shipped"
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    arch = str(meta["command_line"][0]).rsplit("/", 1)[-1].removeprefix("qemu-system-")
    return table.without_boards_of(arch)


def test_name_patterns_blank_instance_numbers_only() -> None:
    assert name_pattern("vtd-00.0") == "vtd-*"
    assert name_pattern("cpu-memory-1") == "cpu-memory-*"
    assert name_pattern("tce-iommu-80000000") == "tce-iommu-*"
    assert name_pattern("e1000e-mmio") == "e1000e-mmio"
    assert name_pattern("ram-node0") == "ram-node0"
    assert name_pattern("device[3]") == "device[*]"


def test_architecture_families_take_their_siblings_along() -> None:
    assert harvest.arch_family("mips64el") == harvest.arch_family("mips") == "mips"
    assert harvest.arch_family("i386") == harvest.arch_family("x86_64")
    assert harvest.arch_family("aarch64") == harvest.arch_family("arm")
    assert harvest.arch_family("riscv32") == "riscv" != harvest.arch_family("ppc64")
    table = harvest.load_table("7.2").without_boards_of("x86_64")
    assert table.vms and all(
        "+" in vm or vm.split()[0] not in ("x86_64", "i386") for vm in table.vms
    )


def test_a_table_ships_for_the_system_qemu() -> None:
    assert "7.2" in VERSIONS
    assert harvest.nearest_version((7, 0)) == "7.2"
    assert harvest.nearest_version((7, 2)) == "7.2"


@pytest.mark.parametrize("version", VERSIONS)
def test_every_fact_carries_provenance_and_agrees(version: str) -> None:
    path = Path(harvest.__file__).parent / "harvested" / f"qemu-{version}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == version and data["qemu"].startswith("QEMU emulator version")
    keys = set()
    for f in data["facts"]:
        key = (f["owner_type"], f["pattern"], f["attribute"])
        assert key not in keys, key
        keys.add(key)
        assert f["observations"] >= len(f["seen"]) >= 1 and all(vms for *_, vms in f["seen"])
        assert f["value"] in {"i/o", "container", "yes", "no", "0", "1"}
    for d in data["dropped"]:
        assert (d["owner_type"], d["pattern"], d["attribute"]) not in keys
        assert len(d["values"]) > 1


@pytest.mark.parametrize(("directory", "tree"), PAIRS)
def test_harvest_from_other_vms_renders_the_fixture_from_the_tree_alone(
    directory: Path, tree: str
) -> None:
    table = table_without_own_machines(directory)
    result = check(
        read(directory / tree),
        read(directory / FLAT_FOR[tree]),
        strict=True,
        harvested=table,
        qemu_version=version_of(directory),
    )
    bad = [
        (v.address_spaces[:2], v.status, [(hex(d.start), d.kind) for d in v.diffs[:3]])
        for v in result.comparison.views
        if not v.ok
    ]
    assert result.ok, bad


def test_check_reports_each_harvested_fact_with_its_provenance() -> None:
    directory = ROOT / "qemu-7.2" / "x86_64" / "q35"
    loaded = load_tree(read(directory / "info-mtree-o-D.txt"), qemu_version="7.2")
    assert loaded.harvested, "no harvested fact used on q35"
    for mr, fact in loaded.harvested:
        f = mr.fact(fact.attribute)
        assert f is not None and f.source is Source.HARVESTED
        assert "QEMU 7.2" in f.detail and fact.vms[0] in f.detail


def test_rules_come_first_and_harvest_only_fills_what_they_left() -> None:
    directory = ROOT / "qemu-7.2" / "x86_64" / "pc"
    loaded = load_tree(read(directory / "info-mtree-o-D.txt"), qemu_version="7.2")
    ruled = {(mr, r.attribute) for mr, r in loaded.rules_applied}
    assert ruled and loaded.harvested
    assert not any((mr, f.attribute) in ruled for mr, f in loaded.harvested)
    for mr, r in loaded.rules_applied:
        f = mr.fact(r.attribute)
        assert f is not None and f.source is Source.RULE


def test_cli_check_lists_harvested_facts(capsys: pytest.CaptureFixture[str]) -> None:
    directory = ROOT / "qemu-7.2" / "x86_64" / "q35"
    code = main(
        [
            "check",
            "--strict",
            "--tree",
            str(directory / "info-mtree-o-D.txt"),
            "--flat",
            str(directory / "info-mtree-f-o.txt"),
        ]
    )
    brief = capsys.readouterr().out
    assert code == 0, brief
    # A match is one line: it counts the harvested facts; -v lists them with provenance.
    assert brief.count("\n") == 1 and " harvested from QEMU 7.2, " in brief, brief
    code = main(
        [
            "check",
            "-v",
            "--strict",
            "--tree",
            str(directory / "info-mtree-o-D.txt"),
            "--flat",
            str(directory / "info-mtree-f-o.txt"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "harvested from the same QEMU version" in out
    assert "harvested" in out and "QEMU 7.2 VMs" in out


def test_cli_render_lists_harvested_facts_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    directory = ROOT / "qemu-7.2" / "x86_64" / "q35"
    code = main(
        [
            "render",
            "--strict",
            "--qemu-version",
            "7.2",
            "--tree",
            str(directory / "info-mtree-o-D.txt"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.startswith("FlatView #0")
    harvested = [ln for ln in captured.err.splitlines() if ln.startswith("harvested ")]
    assert harvested and all("QEMU 7.2 VMs" in ln for ln in harvested)


def test_facts_from_other_versions_fill_only_keys_the_version_is_silent_about() -> None:
    own, other = harvest.load_table("11.1"), harvest.load_table("10.0")
    merged = harvest.across_versions(own, [other])
    assert merged.facts[: len(own.facts)] == own.facts
    own_keys = {(f.pattern, f.attribute) for f in own.facts}
    added = merged.facts[len(own.facts) :]
    assert added, "10.0 has keys 11.1's harvest lacks"
    for f in added:
        assert (f.pattern, f.attribute) not in own_keys
        assert all(vm.startswith("10.0: ") for vm in f.vms), f.vms
        source = [g for g in other.facts if (g.pattern, g.attribute) == (f.pattern, f.attribute)]
        assert source and all(g.value == f.value for g in source)
    # Leaving a machine type's VMs out works on the version-named VMs too.
    vm = added[0].vms[0]
    arch, machine = harvest.vm_machine(vm)
    assert vm.endswith(f"{arch} {machine}") or f"{arch} {machine} " in vm
    gone = merged.without_vms([vm])
    assert vm not in gone.vms
