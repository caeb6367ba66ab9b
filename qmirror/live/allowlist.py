"""The read-only allow-list: the one decision of what may be sent to a VM's monitor.

Every transport (the QMP socket of :mod:`qmirror.live.qmp`, libvirt's monitor passthrough
in :mod:`qmirror.live.libvirt`) calls :func:`check_command` before anything leaves the
process, so a VM is read-only toward qmirror whichever way it is reached.
"""

from __future__ import annotations

import re
from typing import Final

from qmirror.errors import CommandRefused


__all__ = ["HMP", "check_command"]

#: The QMP command that carries an HMP command line.
HMP: Final = "human-monitor-command"

# Commands that only read state. ``human-monitor-command`` is handled separately
# because it is only read-only for ``info``.
_READ_ONLY_COMMANDS: Final = frozenset({"qmp_capabilities"})

# HMP splits its command word off at whitespace (space and tab here; the
# control characters that C's isspace() would also accept are refused outright).
_HMP_WORD = re.compile(r"[ \t]*([^ \t]*)")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _hmp_refusal(command_line: object) -> str | None:
    """Say why an HMP command line is not read-only, or ``None`` if it is."""
    if not isinstance(command_line, str):
        return "'command-line' must be a string"
    if _CONTROL_CHARS.search(command_line):
        return "HMP command line contains control characters"
    match = _HMP_WORD.match(command_line)
    word = match.group(1) if match else ""
    if word != "info":
        return f"HMP command {word!r} is not read-only (only 'info ...' is allowed)"
    return None


def check_command(cmd: str, args: dict[str, object] | None, *, allow_control: bool) -> None:
    """Raise unless *cmd* may be sent.

    Allowed without privilege: ``qmp_capabilities``, every ``query-*`` command, and
    ``human-monitor-command`` whose command line is ``info ...`` (leading blanks allowed,
    no control characters). Everything else needs *allow_control*.

    :param cmd: QMP command name.
    :param args: its arguments.
    :param allow_control: whether control commands are permitted.
    :raise CommandRefused: when the command is not allowed.
    """
    if allow_control:
        return
    if cmd in _READ_ONLY_COMMANDS or cmd.startswith("query-"):
        return
    if cmd == HMP:
        reason = _hmp_refusal((args or {}).get("command-line"))
        if reason is None:
            return
        shown = (args or {}).get("command-line")
        raise CommandRefused(f"{HMP} {shown!r}", reason)
    raise CommandRefused(
        cmd, "not on the read-only allow-list (needs a monitor with allow_control=True)"
    )
