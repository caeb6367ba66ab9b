"""Options shared by several commands, light to import.

``qmirror`` registers every command's options before it knows which command runs,
so nothing here may import a command's implementation (the pipeline, rich, asyncio,
QMP): ``qmirror --version`` stays as quick as Python itself.
"""

from __future__ import annotations

import argparse

from qmirror.live.options import add_target_options


#: The ``--accel`` choices (:data:`qmirror.verify.check.ACCELS`, which is not imported
#: here: it would pull in the whole check pipeline).
ACCELS = ("auto", "tcg", "kvm")

TARGET_HELP = (
    "a capture or snapshot directory, TREE.txt[,FLAT.txt] (saved `info mtree "
    "[-o] [-D]` and `info mtree -f [-o]` texts), or a live QEMU monitor "
    "(unix:PATH, tcp:HOST:PORT, libvirt:DOMAIN)"
)


def text_options(p: argparse.ArgumentParser, *, lenient: bool, launch: bool = False) -> None:
    """How input texts are read: their QEMU dialect, and whether to repair pastes.

    :param launch: the command also has ``--launch``, where ``--qemu-version`` picks the
        QEMU from scripts/qemu-matrix.
    """
    p.add_argument(
        "--qemu-version",
        metavar="X.Y",
        help="the QEMU version that printed the texts (default: detected from "
        "the text)"
        + (
            "; with --launch: run QEMU X.Y (or the series X) "
            "from scripts/qemu-matrix ($QMIRROR_QEMU_MATRIX, "
            "default /var/cache/qmirror)"
            if launch
            else ""
        ),
    )
    p.add_argument(
        "--lenient",
        action=argparse.BooleanOptionalAction,
        default=lenient,
        help="read pastes forgivingly: repair pasting damage (indentation, prompts, "
        "quoting, diff prefixes, wrapped lines, NBSP, CR LF), keep elisions "
        "(...), imply missing headers, and list each repair on stderr; "
        "intact QEMU output reads exactly as without it; texts over 8 MiB "
        "are read strictly" + (" (default: on)" if lenient else " (default: off)"),
    )


def model_options(p: argparse.ArgumentParser) -> None:
    """Options about how the model is completed, shared by the commands that render."""
    p.add_argument(
        "--accel",
        choices=ACCELS,
        default="auto",
        help="accelerator to predict `KVM` words for (default auto: from the tree "
        "where it can tell, else from QEMU's -f unless --strict)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="no inference from QEMU's -f: rule table and defaults only",
    )
    p.add_argument(
        "--no-rules",
        action="store_true",
        help="do not apply the rule table (to see what inference alone does)",
    )


def add_model_options(p: argparse.ArgumentParser) -> None:
    """How the model is completed (as for ``check``), and the live-target options."""
    p.add_argument(
        "--accel",
        choices=ACCELS,
        default="auto",
        help="accelerator the model is for (default auto: recorded with the "
        "capture, else decided from the texts)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="no inference from QEMU's -f: rule table and defaults only",
    )
    p.add_argument("--no-rules", action="store_true", help="do not apply the rule table")
    add_target_options(p, several=False)
