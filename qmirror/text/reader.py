"""The reader of ``info mtree`` documents: the lines of a text and the position in them.

A :class:`Reader` is the one owner of "where we are" while a document is parsed: the
productions of :mod:`qmirror.text.document` look at its current line, take it, and
when the text breaks the grammar ask the reader for the error, which it builds from
the span it holds (file, line, column, the line itself) at the point of failure.
Nothing patches an error on its way out.

The line grammar (:mod:`qmirror.text.grammar`) stays free of positions: its parsers
take one line and its number, and the reader passes the file name along.
"""

from __future__ import annotations

from qmirror.errors import ParseError


def split_lines(text: str, *, filename: str | None = None) -> tuple[list[str], str, bool]:
    """Split ``text`` into lines; return them, the line ending, and whether the text ends in one.

    QEMU's monitor turns every ``\\n`` into CR LF (reference §4.2); files may have
    either, but consistently.

    :raise ParseError: when CR LF and LF are mixed.
    """
    n_lf = text.count("\n")
    n_crlf = text.count("\r\n")
    if n_crlf and n_crlf == n_lf and text.count("\r") == n_crlf:
        # All CR LF (QEMU's monitor): split in C, nothing to strip per line.
        parts = text.split("\r\n")
        eol = "\r\n"
    elif n_crlf == 0 and "\r" not in text:
        parts = text.split("\n")
        eol = "\n"
    else:
        return _split_mixed(text, filename)
    final_eol = parts[-1] == ""
    if final_eol:
        parts.pop()
    return parts, eol, final_eol


def _split_mixed(text: str, filename: str | None) -> tuple[list[str], str, bool]:
    """The slow path: find and report the first line that ends differently."""
    parts = text.split("\n")
    final_eol = parts[-1] == ""
    if final_eol:
        parts.pop()
    crlf = parts[0].endswith("\r")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1 and not final_eol
        if (part.endswith("\r") != crlf and not last) or "\r" in part.rstrip("\r"):
            want = "CR LF" if crlf else "LF"
            raise ParseError(
                f"line ending differs from line 1 ({want}): lines must end alike",
                line=i + 1,
                column=len(part.rstrip("\r")) + 1,
                source_line=part.rstrip("\r"),
                filename=filename,
            )
    parts = [p[:-1] if p.endswith("\r") else p for p in parts]
    return parts, "\r\n" if crlf else "\n", final_eol


class Reader:
    """The lines of one document and the index of the current one.

    ``pos`` is 0-based; :attr:`lineno` is the 1-based number of the current line (one
    past the last line at the end of the text). Productions move ``pos`` only through
    :meth:`take` and :meth:`skip`, or, in a hot loop over a run of lines, by handing
    back the index where the run stopped (:meth:`skip_to`).
    """

    __slots__ = ("filename", "lines", "pos")

    def __init__(self, lines: list[str], filename: str | None = None) -> None:
        self.lines = lines
        self.filename = filename
        self.pos = 0

    @property
    def lineno(self) -> int:
        return self.pos + 1

    def at_end(self) -> bool:
        return self.pos >= len(self.lines)

    def peek(self) -> str | None:
        """The current line, or ``None`` at the end of the text."""
        return self.lines[self.pos] if self.pos < len(self.lines) else None

    def check(self, prefix: str | tuple[str, ...]) -> bool:
        """Whether the current line starts with ``prefix`` (or one of them)."""
        line = self.peek()
        return line is not None and line.startswith(prefix)

    def check_line(self, text: str) -> bool:
        """Whether the current line is exactly ``text``."""
        return self.peek() == text

    def take(self) -> str:
        """The current line; the reader moves past it."""
        line = self.lines[self.pos]
        self.pos += 1
        return line

    def skip(self) -> None:
        self.pos += 1

    def skip_to(self, pos: int) -> None:
        """Move to ``pos``: where a production's run of lines stopped."""
        self.pos = pos

    def expect(self, prefix: str, reason: str) -> str:
        """Take the current line if it starts with ``prefix``; return the rest of it.

        :raise ParseError: ``reason``, at column 1 of the current line.
        """
        if not self.check(prefix):
            raise self.error(reason)
        return self.take()[len(prefix) :]

    def expect_line(self, text: str, reason: str) -> None:
        """Take the current line if it is exactly ``text``."""
        if not self.check_line(text):
            raise self.error(reason)
        self.pos += 1

    def error(self, reason: str, *, column: int = 1, line: int | None = None) -> ParseError:
        """A ParseError at ``column`` of the current line (or of 1-based ``line``)."""
        at = self.pos if line is None else line - 1
        source = self.lines[at] if 0 <= at < len(self.lines) else ""
        return ParseError(
            reason, line=at + 1, column=column, source_line=source, filename=self.filename
        )
