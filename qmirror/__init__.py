"""qmirror: see, mirror and check QEMU's memory map.

The pure core (no I/O): :mod:`~qmirror.core.model`, :mod:`~qmirror.text.grammar`,
:mod:`~qmirror.text.tree`, :mod:`~qmirror.text.flat`, :mod:`~qmirror.core.render`,
:mod:`~qmirror.rebuild.gaps`, :mod:`~qmirror.verify.compare`, :mod:`~qmirror.verify.check`.
The asyncio shell: :mod:`~qmirror.live.qmp`, :mod:`~qmirror.live.launcher`, :mod:`~qmirror.cli`.
"""

from typing import TYPE_CHECKING, Any

from qmirror.errors import ModelError, ParseError, QmirrorError


if TYPE_CHECKING:
    from qmirror.core.model import AddressSpace, Machine, MemoryRegion, RegionKind

__version__ = "0.1.0"

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
