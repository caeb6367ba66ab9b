"""Other architectures, live: a subset of the committed non-x86 fixtures re-captured from
the installed QEMU and checked, so those are never only a replay of old files.

CI installs ``qemu-system-arm`` (which brings ``qemu-system-aarch64``); the others are
covered by their committed fixtures and by ``scripts/survey-machines``.
"""

from __future__ import annotations

import shutil

import pytest
from livehelpers import skip_live

from qmirror.live.launcher import QemuInstance
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.tree import print_like
from qmirror.verify.check import check, load_tree


pytestmark = pytest.mark.qemu

MACHINES = [
    ("qemu-system-aarch64", ["-machine", "virt"]),
    ("qemu-system-aarch64", ["-machine", "virt,secure=on,mte=on", "-cpu", "max"]),
    (
        "qemu-system-aarch64",
        [
            "-machine",
            "virt,gic-version=3,virtualization=on",
            "-cpu",
            "max",
            "-nodefaults",
            "-device",
            "virtio-net-pci",
            "-device",
            "virtio-rng-device",
        ],
    ),
    ("qemu-system-arm", ["-machine", "vexpress-a9"]),
]


IDS = [f"{b.removeprefix('qemu-system-')} {' '.join(a)}" for b, a in MACHINES]


@pytest.mark.parametrize(("binary", "args"), MACHINES, ids=IDS)
async def test_captured_now_checks_clean_with_rules_alone(binary: str, args: list[str]) -> None:
    if shutil.which(binary) is None:
        skip_live(f"{binary} is not installed (Debian package qemu-system-arm)")
    async with QemuInstance(args, binary=binary, paused=True) as vm:
        texts = [
            await vm.monitor.info_mtree(**flags)
            for flags in (
                {},
                {"owners": True, "disabled": True},
                {"flatview": True},
                {"flatview": True, "owners": True},
            )
        ]
    tree, tree_od, flat, flat_o = texts
    for t, f in ((tree, flat), (tree_od, flat_o)):
        result = check(t, f, strict=True)
        assert result.ok, [(v.address_spaces, v.status) for v in result.comparison.views]
        loaded = load_tree(t)
        assert print_like(loaded.machine, loaded.document) == t
        assert print_flat(parse_flat(f)) == f
