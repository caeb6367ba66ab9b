"""The ``info mtree`` text, in and out: the one place that parses or prints it.

Owns the line grammar (:mod:`~qmirror.text.grammar`), tree documents
(:mod:`~qmirror.text.tree`: blocks, headers, ``memory-region:`` sections, QEMU's
printer), flat documents (:mod:`~qmirror.text.flat`), the dialects since QEMU 1.3
(:mod:`~qmirror.text.dialect`), lenient repair of pasted text
(:mod:`~qmirror.text.repair`), the forgiving reader of pastes from the wild
(:mod:`~qmirror.text.forgiving`, its tokenizer :mod:`~qmirror.text.pastelines`, its
sections :mod:`~qmirror.text.pastetree`), the
``-d`` dispatch dump (:mod:`~qmirror.text.dispatch`, its lines in
:mod:`~qmirror.text.dispatchlines`) and QEMU's KVM trace lines
(:mod:`~qmirror.text.kvmtrace`).

May import: :mod:`qmirror.core`, :mod:`qmirror.errors`. No I/O.
"""
