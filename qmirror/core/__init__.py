"""The pure core: the MemoryRegion model and QEMU's rendering of it.

Owns :mod:`~qmirror.core.model` (MemoryRegion, AddressSpace, Machine, QEMU's subregion
order), :mod:`~qmirror.core.render` (FlatViews, QEMU's algorithm), the model as JSON
(:mod:`~qmirror.core.modeljson`) and small units (hex and human sizes).

May import: the standard library and :mod:`qmirror.errors`. No I/O, no asyncio, no rich.
"""
