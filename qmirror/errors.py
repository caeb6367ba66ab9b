"""qmirror's errors: one root, each error carrying only what it needs.

Hierarchy::

    QmirrorError
     ├── ParseError          text that is not `info mtree` output (line, column, reason)
     ├── ModelError          a model that cannot be rendered or printed (alias loop, ...)
     ├── InputError          something the user gave that cannot be used: an unreadable
     │    │                  file, a file of the wrong kind, an option value
     │    ├── ConfigError        a settings file, environment variable or ignore rule
     │    ├── TargetError        a TARGET that names nothing usable, or a misused one
     │    └── ExpectationError   a memory-map expectation in none of the accepted forms
     ├── OutputError         a report, page or file qmirror was asked to write
     ├── SnapshotError       a snapshot directory that cannot be read or written
     ├── ReadingError        no consistent reading of a live VM (the map never held still)
     ├── MirrorError         the live mirror used the wrong way
     ├── MonitorError        talking to a QEMU monitor went wrong
     │    ├── ConnectError       cannot connect, or no QMP greeting
     │    ├── CommandRefused     the command is not on the read-only allow-list
     │    ├── CommandFailed      QEMU answered with an error (QMP error or HMP error text)
     │    └── MonitorTimeout     no answer in time
     └── LaunchError         a QEMU that qmirror started did not come up (exit code, log)

Callers catch the leaf they can act on, or :class:`QmirrorError` for all of them (the
command line turns every one into a message and exit status 2). Input errors are never
``ValueError``. Causes are chained with ``raise ... from exc``.
``asyncio.CancelledError`` and other ``BaseException``\\ s are never wrapped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


class QmirrorError(Exception):
    """Root of every error qmirror raises on purpose."""


#: Quoted names longer than this are cut in messages (names come from the input).
_LONG_NAME = re.compile(r"'[^'\n]{100,}'")


def shorten(message: str, limit: int = 400) -> str:
    """Keep a message readable when it quotes a huge name from the input.

    Long quoted names keep their start and end; what is still too long loses its
    middle. The attributes of an error keep the full text.
    """
    if len(message) <= limit:
        return message
    message = _LONG_NAME.sub(lambda m: f"{m[0][:60]}…{m[0][-20:]}", message)
    if len(message) > limit:
        message = f"{message[: limit * 2 // 3]}…{message[-(limit // 3) :]}"
    return message


class ParseError(QmirrorError):
    """Input that does not follow the grammar of ``info mtree``.

    ``line`` and ``column`` are 1-based and point at the offending character of
    ``source_line`` (the line as read, without its line ending).
    """

    def __init__(
        self,
        reason: str,
        *,
        line: int,
        column: int,
        source_line: str = "",
        filename: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column
        self.source_line = source_line
        self.filename = filename

    def __str__(self) -> str:
        where = f"{self.filename}:" if self.filename else "line "
        head = f"{where}{self.line}:{self.column}: {shorten(self.reason)}"
        if not self.source_line:
            return head
        shown = self.source_line.replace("\t", " ")
        if len(shown) > 160:
            # Keep the caret visible on very long lines: show a window around it.
            lo = max(0, self.column - 80)
            shown = ("…" if lo else "") + shown[lo : lo + 160]
            caret_at = self.column - lo + (1 if lo else 0)
        else:
            caret_at = self.column
        return f"{head}\n    {shown}\n    {' ' * (caret_at - 1)}^"


class ModelError(QmirrorError):
    """A model that cannot be rendered or printed as asked."""

    def __str__(self) -> str:
        return shorten(super().__str__())


class InputError(QmirrorError):
    """Something the user gave cannot be used: a file, a TARGET, an option's value."""


class ConfigError(InputError):
    """A setting (``[tool.qmirror]`` file, ``QMIRROR_*`` variable, ignore rule) is wrong."""


class TargetError(InputError):
    """A TARGET names nothing qmirror can read, or is used where it cannot be."""


class ExpectationError(InputError):
    """A memory-map expectation (:mod:`qmirror.verify.expect`) in none of its forms."""


class OutputError(QmirrorError):
    """A file qmirror was asked to write (report, page, JUnit XML) cannot be written."""


class SnapshotError(QmirrorError):
    """A snapshot directory cannot be read (not one, missing or bad files) or written."""


class ReadingError(QmirrorError):
    """No consistent reading of a live VM: its memory map kept changing."""


class MirrorError(QmirrorError):
    """The live mirror was used the wrong way (e.g. followed twice at once)."""


class MonitorError(QmirrorError):
    """Something went wrong while talking to a QEMU monitor."""


class ConnectError(MonitorError):
    """Could not connect to the monitor, or it never greeted us."""


class CommandRefused(MonitorError):
    """qmirror refused to send a command that is not on its read-only allow-list."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"refused to send {command!r}: {reason}")
        self.command = command
        self.reason = reason


class CommandFailed(MonitorError):
    """QEMU answered a command with an error."""

    def __init__(self, command: str, message: str, error_class: str | None = None) -> None:
        super().__init__(f"{command}: {message}")
        self.command = command
        self.message = message
        self.error_class = error_class


class MonitorTimeout(MonitorError):
    """The monitor did not answer in time."""


class LaunchError(QmirrorError):
    """A QEMU that qmirror launched exited or failed before it was usable."""

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] = (),
        exitcode: int | None = None,
        log: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.command = list(command)
        self.exitcode = exitcode
        self.log = log

    def __str__(self) -> str:
        parts = [self.message]
        if self.exitcode is not None:
            parts.append(f"exit code {self.exitcode}")
        text = "; ".join(parts)
        log = self.log.strip()
        if log:
            text += "\nQEMU said:\n" + "\n".join("  " + ln for ln in log.splitlines()[-20:])
        return text
