"""The survey's board rules (qmirror/rebuild/board_rules.py) on the boards they were
written for, live on every QEMU version: each VM is checked from its tree alone
(rules only: no inference from ``-f``, no harvested facts) against QEMU's own ``-f``.

Without the rule each of these boards fails the strict check (docs/machines-X.Y.md,
"Rule gaps"); with it, QEMU's FlatViews come out exactly.
"""

from __future__ import annotations

import os

import pytest
from livehelpers import assert_gone

from qmirror.errors import QmirrorError
from qmirror.live.launcher import QemuInstance
from qmirror.live.targets import DEFAULT_MATRIX, matrix_binary
from qmirror.rebuild.rules import RULES
from qmirror.verify.check import check


pytestmark = pytest.mark.qemu

#: (binary, machine, rules it needs) on every version CI runs.
EVERY_VERSION = [
    ("arm", "romulus-bmc", {"aspeed-i2c-terminates", "aspeed-sdhci-terminates"}),
    ("arm", "versatilepb", {"versatile-pci-space-container"}),
    ("ppc", "g3beige", {"pci-isa-mmio-terminates", "pci-mmio-container"}),
]
#: Boards (or their rules) that only the newer versions have.
NEWER = [
    ("arm", "ast2600-evb", {"fsi-cfam-terminates", "aspeed-smc-flash-terminates"}),
    ("aarch64", "imx8mp-evk", {"unimplemented-device-order"}),
    ("ppc64", "powernv9", {"pnv-xive-vc-container", "isa-mem-container"}),
    ("ppc", "sam460ex", {"ppc440-pcix-io-container", "ppc440-pcix-memory-container"}),
    ("hppa", "C3700", {"astro-terminates", "elroy-terminates"}),
]
CASES = [
    pytest.param(v, b, m, r, id=f"{v}-{b}-{m}")
    for v in ("5.2", "7.2", "10.0", "11")
    for b, m, r in EVERY_VERSION
    # Debian's 7.2 here (bookworm's qemu-system-x86/-arm) has no PowerPC binary.
    if not (v == "7.2" and b == "ppc")
] + [pytest.param(v, b, m, r, id=f"{v}-{b}-{m}") for v in ("10.0", "11") for b, m, r in NEWER]
#: 5.2's ast2600 maps its 1.8 V GPIO window over the RTC (a G3 order rule).
OLDER = [("arm", "tacoma-bmc", {"ast2600-gpio-1v8-over-rtc"})]
CASES += [pytest.param("5.2", b, m, r, id=f"5.2-{b}-{m}") for b, m, r in OLDER]


def test_the_rules_named_here_exist() -> None:
    ids = {r.id for r in RULES}
    for _, _, wanted in EVERY_VERSION + NEWER + OLDER:
        assert wanted <= ids, wanted - ids


@pytest.mark.parametrize(("version", "arch", "machine", "wanted"), CASES)
async def test_board_renders_from_the_tree_and_rules_alone(
    version: str, arch: str, machine: str, wanted: set[str]
) -> None:
    try:
        binary = matrix_binary(version, f"qemu-system-{arch}")
    except QmirrorError as exc:
        root = os.environ.get("QMIRROR_QEMU_MATRIX") or DEFAULT_MATRIX
        reason = f"QEMU {version} ({arch}) not in the matrix at {root}: {exc}"
        if os.environ.get("QMIRROR_REQUIRE_LIVE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    async with QemuInstance(["-machine", machine], binary=binary, paused=True) as vm:
        tree = await vm.monitor.info_mtree(owners=True, disabled=True)
        flat = await vm.monitor.info_mtree(flatview=True, owners=True)
        pid = vm.pid
    assert_gone(pid)
    result = check(tree, flat, strict=True, harvested=False)
    assert result.ok, [
        (v.address_spaces[:2], v.status, v.diffs[:1]) for v in result.comparison.views if not v.ok
    ]
    used = {rule.id for _, rule in result.loaded.rules_applied}
    assert used & wanted, (sorted(used), wanted)
