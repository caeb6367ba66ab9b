"""The ``info mtree`` text, in and out: the one place that parses or prints it.

Owns the line grammar and every literal (:mod:`~qmirror.text.grammar`), the one
document reader (:mod:`~qmirror.text.reader`: the position, errors from its span) and
the productions of both documents' structure (:mod:`~qmirror.text.document`: blocks,
headers, blank lines, FlatView blocks), tree documents (:mod:`~qmirror.text.tree`:
what a tree text says about its flags and dialect, QEMU's printer), flat documents
(:mod:`~qmirror.text.flat`), the dialects since QEMU 1.3
(:mod:`~qmirror.text.dialect`), lenient repair of pasted text
(:mod:`~qmirror.text.repair`), the forgiving reader of pastes from the wild
(:mod:`~qmirror.text.forgiving`, its tokenizer :mod:`~qmirror.text.pastelines`, its
sections :mod:`~qmirror.text.pastetree`), the
``-d`` dispatch dump (:mod:`~qmirror.text.dispatch`, its lines in
:mod:`~qmirror.text.dispatchlines`) and QEMU's KVM trace lines
(:mod:`~qmirror.text.kvmtrace`).

May import: :mod:`qmirror.core`, :mod:`qmirror.errors`. No I/O.
"""
