"""From text to model: what QEMU printed becomes a MemoryRegion tree.

Owns the reconstruction of a tree text (:mod:`~qmirror.rebuild.tree`: occurrences,
hidden parents, alias targets), the smallest model behind a ``-f`` paste alone
(:mod:`~qmirror.rebuild.flat`), the sourced rule table (:mod:`~qmirror.rebuild.rules`)
and what fills the text's gaps (:mod:`~qmirror.rebuild.gaps`: rules, inference from
QEMU's ``-f``, documented defaults).

May import: :mod:`qmirror.text`, :mod:`qmirror.core`, :mod:`qmirror.errors`. No I/O.
"""
