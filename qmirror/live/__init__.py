"""The shell that talks to running QEMUs; everything here may do I/O.

Owns the read-only QMP monitor (:mod:`~qmirror.live.qmp`), the QEMU launcher
(:mod:`~qmirror.live.launcher`), consistent readings and snapshot directories
(:mod:`~qmirror.live.snapshot`), TARGETs (:mod:`~qmirror.live.targets`), checking many
VMs at once (:mod:`~qmirror.live.livecheck`), QMP events as qmirror's own type
(:mod:`~qmirror.live.events`), the mirror's event loop (:mod:`~qmirror.live.mirror`, which
feeds a :class:`~qmirror.sim.replica.Replica`), its JSON Lines and text output
(:mod:`~qmirror.live.writers`) and settings files (:mod:`~qmirror.live.config`).

May import: :mod:`qmirror.verify` and everything below it, asyncio, qemu.qmp,
subprocess, sockets. Not :mod:`qmirror.views` or :mod:`qmirror.cli`.
"""
