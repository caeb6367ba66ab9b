"""Start-up stays light (issue 13): a command imports only what it uses.

Each case runs in a fresh interpreter and lists the modules loaded; timing is left to
``scripts/bench``, which compares ``qmirror --version`` with ``python -c pass``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
Q35 = ROOT / "fixtures" / "qemu-7.2" / "x86_64" / "q35"

#: Heavy for a command that does not need them: the live layer's stack and deepdiff.
LIVE_AND_DIFF = (
    "asyncio",
    "qemu.qmp",
    "deepdiff",
    "qmirror.live.targets",
    "qmirror.live.qmp",
    "qmirror.live.launcher",
    "qmirror.views.mapview",
)


def loaded_after(*argv: str) -> set[str]:
    """The modules loaded once ``qmirror ARGV`` has run (in a fresh interpreter)."""
    code = (
        "import json, sys\n"
        "from qmirror.cli import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write('\\n' + json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    return set(json.loads(proc.stderr.splitlines()[-1]))


def test_version_imports_no_command() -> None:
    loaded = loaded_after("--version")
    heavy = {
        m
        for m in loaded
        if m.split(".")[0] in ("rich", "asyncio", "deepdiff", "qemu")
        or m.startswith(
            (
                "qmirror.core",
                "qmirror.text",
                "qmirror.rebuild",
                "qmirror.verify",
                "qmirror.views",
                "qmirror.sim",
            )
        )
    }
    assert heavy == set()


@pytest.mark.parametrize("flat", ["info-mtree-f-o.txt", "info-mtree-f.txt"])
def test_offline_check_imports_neither_the_live_layer_nor_deepdiff_on_a_match(flat: str) -> None:
    # The -f without owners still matches: owners are compared only when both have them.
    loaded = loaded_after(
        "--color",
        "never",
        "check",
        "--tree",
        str(Q35 / "info-mtree-o-D.txt"),
        "--flat",
        str(Q35 / flat),
    )
    assert "qmirror.verify.check" in loaded  # it did run the check
    assert loaded.isdisjoint(LIVE_AND_DIFF)
