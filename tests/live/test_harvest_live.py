"""The shipped harvest agrees with what real QEMU shows now (scripts/harvest-rules).

One single-device VM is harvested afresh, exactly as the script does, and every key it
observes must carry the same value in the shipped 7.2 table (or be absent from it).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from qmirror.live.launcher import QemuInstance
from qmirror.rebuild import harvest


pytestmark = pytest.mark.qemu

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "harvest-rules"


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("qmirror_harvest_rules", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


async def test_a_fresh_harvest_of_one_device_vm_agrees_with_the_shipped_table(
    qemu_binary: str,
) -> None:
    script = load_script()
    version = "7.2"
    table = harvest.load_table(version)
    async with QemuInstance(binary=qemu_binary) as probe:
        info = await probe.monitor.describe()
    if not info["qemu_version"].startswith(version + "."):
        pytest.fail(f"the system QEMU is {info['qemu_version']}, the table is {version}")
    # As the script does it: SeaBIOS runs until it has mapped the BARs, then stop.
    vm = script.VM(
        "x86_64 q35 +e1000e booted",
        qemu_binary,
        ["-machine", "q35", "-nodefaults", "-device", "e1000e,id=hv0"],
        "device",
        boot=True,
    )
    texts = await script.capture(vm, 15.0)
    fresh = script.Harvest(version, "")
    assert script.analyse(fresh, vm, texts) is None
    shipped = {(f.owner_type, f.pattern, f.attribute): f.value for f in table.facts}
    compared = 0
    for key, values in fresh.seen.items():
        assert len(values) == 1, (key, values)
        if key in shipped:
            assert shipped[key] == next(iter(values)), key
            compared += 1
    assert compared >= 10, f"only {compared} keys of the fresh harvest are in the table"
    # The device's own BARs, mapped by the firmware: MMIO terminates, the flash BAR
    # (nothing behind it) is a container.
    assert fresh.seen[("e1000e", "e1000e-mmio", "kind")].keys() == {"i/o"}
    assert fresh.seen[("e1000e", "e1000e-flash", "kind")].keys() == {"container"}
