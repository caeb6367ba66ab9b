"""``python -m qmirror``, and the ``qmirror`` command's entry point.

The command line's modules take a while to import; a Ctrl-C meanwhile ends the
command quietly with status 130 (128 + SIGINT), as it does later on.
"""

import sys


def run() -> int:
    """Import the command line and run it; Ctrl-C at any point: 130, no traceback."""
    try:
        from qmirror.cli import main  # noqa: PLC0415 - inside the try, on purpose

        return main()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(run())
