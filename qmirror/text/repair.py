"""Repairs for ``info mtree`` text as people paste it (``--lenient``).

Dumps travel through terminals, mail, bug trackers, Markdown, reStructuredText and
source code. :func:`repair` undoes what those do, where it can be undone
unambiguously, and reports each repair with the line it applied to:

* line endings: CR LF and LF mixed (normalised to the more common);
* Unicode spaces (NBSP and friends) instead of spaces;
* quoting: ``> `` mail/Markdown quotes, Markdown code fences, a uniform extra
  indentation (reST ``.. code::`` blocks, source-code literals), ``\\"`` escapes of a
  string literal, whitespace-only separator lines;
* tabs in the indentation (expanded to 8 columns);
* a monitor prompt or the echoed command (``(qemu) info mtree -f``);
* a long line wrapped by a mailer (continuation at column 0 joined back);
* an output that restarts (``FlatView #0`` or the first header again): the last
  complete copy is kept;
* a missing blank line at the end.

What cannot be repaired is left for the parser to report as a ParseError, whose line
numbers :class:`Repaired` maps back to the original text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qmirror.errors import ParseError
from qmirror.text.grammar import (
    ALIASES_HEADER,
    AS_HEADER,
    AS_LINE_PREFIX,
    FLAT_AS_HEADER,
    FLATVIEW_HEADER,
    MR_HEADER,
    NO_FLATVIEW,
    ROOT_PREFIX,
    is_region_line,
)


@dataclass(frozen=True, slots=True)
class Repair:
    """One repair: where (1-based line of the original text) and what."""

    line: int
    what: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


@dataclass(slots=True)
class Repaired:
    """The repaired text, what was done, and where each of its lines came from."""

    text: str
    repairs: list[Repair] = field(default_factory=list)
    #: ``origin[i]`` is the original line number of repaired line ``i + 1``.
    origin: list[int] = field(default_factory=list)

    def original_line(self, line: int) -> int:
        if 0 < line <= len(self.origin):
            return self.origin[line - 1]
        return line


_UNICODE_SPACES = re.compile("[\u00a0\u2000-\u200a\u202f\u205f\u3000]")
_PROMPT = re.compile(r"^\s*\(qemu\)\s*(info\s+mtree\b.*)?$")
_ECHO = re.compile(r"^\s*info\s+mtree(\s+-[fdoD])*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADER = re.compile(
    r"^\s*(?:"
    + "|".join(
        [
            *(re.escape(h) for h in (AS_HEADER, MR_HEADER, FLAT_AS_HEADER)),
            re.escape(FLATVIEW_HEADER) + r"\d+$",
            *(re.escape(h) for h in (AS_LINE_PREFIX, ROOT_PREFIX, NO_FLATVIEW)),
        ]
    )
    + ")"
)
#: A run line of the `-d` dump, which QEMU itself starts with a tab. (Reliability fix,
#: issue 6: no ` *` before the ` +`, which backtracked quadratically over long runs of
#: spaces — 15 s on one 200 kB line; the language is the same.)
_RUN_LINE = re.compile(r"\t *\d+(?:\.\.\d+)? +skip=\d+ ")
_FIRST_VIEW = FLATVIEW_HEADER + "0"
_STARTERS = (AS_HEADER, MR_HEADER, FLATVIEW_HEADER, FLAT_AS_HEADER)


def repair(text: str) -> Repaired:
    """Undo pasting damage; see the module docstring for what is repaired."""
    repairs: list[Repair] = []
    raw = text.split("\n")
    final_eol = raw[-1] == ""
    if final_eol:
        raw.pop()
    lines = list(enumerate(raw, 1))  # (original line number, text)

    # Line endings: keep the majority.
    crlf = sum(1 for _, ln in lines if ln.endswith("\r"))
    eol = "\r\n" if crlf * 2 >= len(lines) and crlf else "\n"
    if 0 < crlf < len(lines):
        odd = next(n for n, ln in lines if ln.endswith("\r") != (eol == "\r\n"))
        made = "CR LF" if eol == "\r\n" else "LF"
        repairs.append(Repair(odd, f"mixed line endings: all made {made}"))
    lines = [(n, ln.rstrip("\r")) for n, ln in lines]

    out: list[tuple[int, str]] = []
    for n, ln in lines:
        if _UNICODE_SPACES.search(ln):
            repairs.append(Repair(n, "Unicode spaces (NBSP) made plain spaces"))
            ln = _UNICODE_SPACES.sub(" ", ln)
        out.append((n, ln))
    lines = out

    # Code fences and monitor prompts / echoed commands.
    out = []
    for n, ln in lines:
        if _FENCE.match(ln):
            repairs.append(Repair(n, "Markdown code fence dropped"))
            continue
        if _PROMPT.match(ln) or _ECHO.match(ln):
            repairs.append(Repair(n, f"monitor prompt or echoed command dropped: {ln.strip()!r}"))
            continue
        out.append((n, ln))
    lines = out

    # Mail / Markdown quoting: the same "> " prefix on every non-empty line.
    quoted = [ln for _, ln in lines if ln.strip()]
    if quoted and all(ln.lstrip(" ").startswith(">") for ln in quoted):
        repairs.append(Repair(lines[0][0], "'> ' quoting removed from every line"))
        lines = [(n, re.sub(r"^\s*> ?", "", ln)) for n, ln in lines]

    # Escaped quotes of a string literal (` AS \"I/O\"`).
    if any('\\"' in ln for _, ln in lines) and not any(
        re.search(r'(?<!\\)"', ln) for _, ln in lines
    ):
        first = next(n for n, ln in lines if '\\"' in ln)
        repairs.append(Repair(first, 'string-literal escapes \\" made "'))
        lines = [(n, ln.replace('\\"', '"')) for n, ln in lines]

    # Whitespace-only separator lines are blank lines.
    out = []
    for n, ln in lines:
        if ln.strip() == "" and ln != "":
            repairs.append(Repair(n, "whitespace-only line made blank"))
            ln = ""
        out.append((n, ln))
    lines = out

    # A uniform extra indentation: the common indent of header lines, which QEMU
    # never indents, taken off every line that has it.
    heads = [ln for _, ln in lines if _HEADER.match(ln) and ln.lstrip(" ").startswith(_STARTERS)]
    if heads:
        extra = min(len(ln) - len(ln.lstrip(" ")) for ln in heads)
        if extra:
            repairs.append(
                Repair(lines[0][0], f"uniform extra indentation of {extra} spaces removed")
            )
            lines = [(n, ln[extra:] if ln.startswith(" " * extra) else ln) for n, ln in lines]
    out = []
    for n, ln in lines:
        body = ln.lstrip(" ")
        if body.startswith(_STARTERS) and body != ln:
            repairs.append(Repair(n, "header unindented"))
            ln = body
        out.append((n, ln))
    lines = out

    # Tabs in the indentation, once any uniform indentation is gone (the -d dump's own
    # run lines start with a tab and are kept).
    out = []
    for n, ln in lines:
        lead = ln[: len(ln) - len(ln.lstrip(" \t"))]
        if "\t" in lead and not _RUN_LINE.match(ln):
            repairs.append(Repair(n, "tabs in the indentation expanded to 8 columns"))
            ln = lead.expandtabs(8) + ln[len(lead) :]
        out.append((n, ln))
    lines = out

    # Mail-wrapped lines: a continuation at column 0 that is no line of its own.
    out = []
    for n, ln in lines:
        if (
            out
            and ln
            and not ln.startswith((" ", "\t"))
            and not ln.startswith(_STARTERS)
            and not is_region_line(ln)
            and ln != ALIASES_HEADER
            and is_region_line(out[-1][1])
        ):
            prev_n, prev = out[-1]
            repairs.append(Repair(n, "wrapped line joined to the line before"))
            out[-1] = (prev_n, prev + " " + ln)
            continue
        out.append((n, ln))
    lines = out

    # An output that starts over: keep the last complete copy. In valid output
    # `FlatView #0` comes once, and no `address-space:` header follows a
    # `memory-region:` block.
    restart: int | None = None
    seen_region_block = False
    for i, (_, ln) in enumerate(lines):
        if ln.startswith(MR_HEADER):
            seen_region_block = True
        elif (ln.startswith(AS_HEADER) and seen_region_block) or (
            ln == _FIRST_VIEW and i > 0 and any(x == _FIRST_VIEW for _, x in lines[:i])
        ):
            restart = i
            seen_region_block = False
    if restart is not None:
        repairs.append(
            Repair(
                lines[restart][0],
                f"the output starts again here: lines "
                f"{lines[0][0]}–{lines[restart][0] - 1} dropped",
            )
        )
        lines = lines[restart:]
    first_header = next((i for i, (_, ln) in enumerate(lines) if ln.startswith(_STARTERS)), None)
    if first_header:
        first = first_header
        dropped = lines[:first]
        if any(ln.strip() for _, ln in dropped):
            repairs.append(
                Repair(dropped[0][0], f"{len(dropped)} lines before the first header dropped")
            )
        lines = lines[first:]

    # Blank lines at the end: exactly one closes the last block (2.4+ layouts).
    while len(lines) > 1 and lines[-1][1] == "" and lines[-2][1] == "":
        repairs.append(Repair(lines[-1][0], "extra blank line at the end dropped"))
        lines.pop()
    if lines and lines[-1][1] != "" and any(ln == "" for _, ln in lines):
        repairs.append(Repair(lines[-1][0] + 1, "missing blank line at the end added"))
        lines.append((lines[-1][0] + 1, ""))

    fixed = eol.join(ln for _, ln in lines) + (eol if lines else "")
    return Repaired(fixed, repairs, [n for n, _ in lines])


def remap_error(err: ParseError, fixed: Repaired, original: str | None) -> ParseError:
    """``err`` (about the repaired text) with the line number of the original text."""
    line = fixed.original_line(err.line)
    note = f" (after {len(fixed.repairs)} repairs)" if fixed.repairs else ""
    return ParseError(
        err.reason + note,
        line=line,
        column=err.column,
        source_line=err.source_line,
        filename=err.filename,
    )
