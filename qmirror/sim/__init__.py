"""QEMU's machinery on the model: the memory API, listeners, KVM, dispatch.

Owns the memory API simulator (:mod:`~qmirror.sim.memory`: transactions, commits),
MemoryListeners and QEMU's two topology passes (:mod:`~qmirror.sim.listener`,
:mod:`~qmirror.sim.topology`), the replica that follows a VM over readings and emits
listener calls, sans I/O (:mod:`~qmirror.sim.replica`), KVM memory slots
(:mod:`~qmirror.sim.kvm`) and the dispatch structure behind ``-f -d``
(:mod:`~qmirror.sim.dispatch`).

May import: :mod:`qmirror.rebuild`, :mod:`qmirror.text`, :mod:`qmirror.core`,
:mod:`qmirror.errors`. No I/O.
"""
