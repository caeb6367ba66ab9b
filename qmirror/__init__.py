"""qmirror: see, mirror and check QEMU's memory map.

The pure core (no I/O): :mod:`~qmirror.model`, :mod:`~qmirror.grammar`,
:mod:`~qmirror.treetext`, :mod:`~qmirror.flattext`, :mod:`~qmirror.render`,
:mod:`~qmirror.gaps`, :mod:`~qmirror.compare`, :mod:`~qmirror.check`.
The asyncio shell: :mod:`~qmirror.qmp`, :mod:`~qmirror.launcher`, :mod:`~qmirror.cli`.
"""

from qmirror.errors import ModelError, ParseError, QmirrorError
from qmirror.model import AddressSpace, Machine, MemoryRegion, RegionKind


__version__ = "0.1.0"

__all__ = [
    "AddressSpace",
    "Machine",
    "MemoryRegion",
    "ModelError",
    "ParseError",
    "QmirrorError",
    "RegionKind",
    "__version__",
]
