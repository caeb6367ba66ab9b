"""qmirror: see, mirror and check QEMU's memory map.

The pure core (no I/O): :mod:`~qmirror.core.model`, :mod:`~qmirror.text.grammar`,
:mod:`~qmirror.text.tree`, :mod:`~qmirror.text.flat`, :mod:`~qmirror.core.render`,
:mod:`~qmirror.rebuild.gaps`, :mod:`~qmirror.verify.compare`, :mod:`~qmirror.verify.check`.
The asyncio shell: :mod:`~qmirror.live.qmp`, :mod:`~qmirror.live.launcher`, :mod:`~qmirror.cli`.
"""

from qmirror.core.model import AddressSpace, Machine, MemoryRegion, RegionKind
from qmirror.errors import ModelError, ParseError, QmirrorError


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
