"""Checking our model against QEMU: the pipeline and its verdicts.

Owns the one pipeline (:func:`qmirror.verify.check.run`: text -> model -> rules and
inference -> render -> compare; every check, reading, snapshot and the mirror use it),
the comparison with explanations (:mod:`~qmirror.verify.compare`), one reading of a VM
(:mod:`~qmirror.verify.reading`), ignore rules, expected memory maps
(:mod:`~qmirror.verify.expect`) and the difference between two readings
(:mod:`~qmirror.verify.snapdiff`).

May import: :mod:`qmirror.sim`, :mod:`qmirror.rebuild`, :mod:`qmirror.text`,
:mod:`qmirror.core`, :mod:`qmirror.errors`. No I/O.
"""
