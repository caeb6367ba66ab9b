"""qmirror: see, mirror and check QEMU's memory map.

The package is the call flow of a check, one layer per subpackage (each docstring
says what it owns and may import): :mod:`~qmirror.core` (model, rendering),
:mod:`~qmirror.text` (the ``info mtree`` text in and out), :mod:`~qmirror.rebuild`
(text to model, rules, inference), :mod:`~qmirror.sim` (memory API, listeners, KVM),
:mod:`~qmirror.verify` (the check pipeline, comparison); then the shell that alone does
I/O: :mod:`~qmirror.live` (QMP, launcher, mirror), :mod:`~qmirror.views` (reports,
maps) and :mod:`~qmirror.cli`.
"""

from qmirror.core.model import AddressSpace, Machine, MemoryRegion, RegionKind
from qmirror.errors import ModelError, ParseError, QmirrorError


__version__ = "0.2.0"

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
