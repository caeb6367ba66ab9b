"""``python -m qmirror``."""

import sys

from qmirror.cli import main


sys.exit(main())
