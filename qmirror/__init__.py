"""qmirror: see, mirror and check QEMU's memory map.

The package is the call flow of a check, one layer per subpackage (each docstring
says what it owns and may import): :mod:`~qmirror.core` (model, rendering),
:mod:`~qmirror.text` (the ``info mtree`` text in and out), :mod:`~qmirror.rebuild`
(text to model, rules, inference), :mod:`~qmirror.sim` (memory API, listeners, KVM),
:mod:`~qmirror.verify` (the check pipeline, comparison); then the shell that alone does
I/O: :mod:`~qmirror.live` (QMP, launcher, mirror), :mod:`~qmirror.views` (reports,
maps) and :mod:`~qmirror.cli`.
"""

from typing import TYPE_CHECKING, Any

from qmirror.errors import ModelError, ParseError, QmirrorError


if TYPE_CHECKING:
    from qmirror.core.model import AddressSpace, Machine, MemoryRegion, RegionKind

__version__ = "0.2.0"

_MODEL_NAMES = frozenset({"AddressSpace", "Machine", "MemoryRegion", "RegionKind"})


def __getattr__(name: str) -> Any:
    """The model's classes, imported on first use: ``qmirror --version`` needs none."""
    if name in _MODEL_NAMES:
        from qmirror.core import model

        return getattr(model, name)
    raise AttributeError(f"module 'qmirror' has no attribute {name!r}")


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
