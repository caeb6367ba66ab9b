"""The forgiving reader's tokenizer: one pasted line in, one classified token out.

People paste ``info mtree`` through terminals, mailers, bug trackers, diffs, Markdown
and source code. :func:`tokenize` undoes what those do to single lines and says what
each line is; :mod:`qmirror.text.forgiving` assembles the tokens into documents.
Every change is a :class:`~qmirror.text.repair.Repair` at its original line.

Token grammar (after the line-level repairs below; ``JUNK`` is whatever precedes the
first anchor: quoting, comment markers, prompts, a string literal's opening)::

    token      = blank | tree-head | flat-head | as-line | root-line | no-view
               | region | elision | junk
    tree-head  = JUNK ("address-space: " | "memory-region: ") NAME
    flat-head  = JUNK ("FlatView #" INT | "address-space (flat view): " NAME)
    as-line    = JUNK 'AS "' NAME '", root: ' ROOT [", alias " NAME]
    root-line  = JUNK "Root memory region: " NAME
    no-view    = JUNK "No rendered FlatView" [" for address space '" NAME "'"]
    region     = JUNK INDENT overflow* HEX "-" HEX " (prio " INT ", " TYPE "):" [" " BODY]
    HEX        = 8 to 16 hex digits, either case      (QEMU 1.x printed 8 on 32-bit hosts)
    elision    = JUNK ("..." | "…" | "[...]" | "<snip>" | "[snip]" | "(...)") [TEXT]
    INDENT     = the blanks just before the range, tabs expanded to 8 columns

Line-level repairs, in order: line endings; Unicode spaces (NBSP, thin and
ideographic spaces) and zero-width characters; Markdown backslash escapes and a
string literal's ``\\"``; trailing blanks; a unified diff's prefixes (the new side
is read, removed lines dropped); mail and prompt quoting (``>``, ``>>>``, ``//``,
``#``, ``|``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qmirror.text.grammar import (
    AS_HEADER,
    FLAT_AS_HEADER,
    FLATVIEW_HEADER,
    MR_HEADER,
    NO_FLATVIEW,
    OVERFLOW_MARKER,
    ROOT_PREFIX,
    split_owners,
)
from qmirror.text.repair import Repair


#: Kinds of :class:`Token`.
BLANK, TREE_HEAD, FLAT_HEAD, AS_LINE, ROOT_LINE, NO_VIEW, REGION, ELISION, JUNK = (
    "blank",
    "tree-head",
    "flat-head",
    "as-line",
    "root-line",
    "no-view",
    "region",
    "elision",
    "junk",
)

_UNICODE_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_ZERO_WIDTH = re.compile("[\u200b-\u200d\u2060\ufeff]")
_MD_ESCAPED_RANGE = re.compile(r"[0-9a-fA-F]{8}\\-[0-9a-fA-F]{8}")
_MD_ESCAPE = re.compile(r"\\([-#=<>_*\[\]().!+`{}|~\\])")
_REGION = re.compile(
    r"(?P<markers>(?:\[DETECTED OVERFLOW!\] )*)(?P<start>[0-9a-fA-F]{8,16})-"
    r"(?P<end>[0-9a-fA-F]{8,16}) \(prio (?P<prio>-?\d{1,11}), (?P<type>[^()]{1,20})\):"
    r"(?: (?P<body>.*))?\Z"
)
_REGION_ANYWHERE = re.compile(
    r"(?<![0-9A-Za-z])(?:\[DETECTED OVERFLOW!\] )*[0-9a-fA-F]{8,16}-"
    r"[0-9a-fA-F]{8,16} \(prio -?\d"
)
_RANGE_DIGITS = re.compile(r"(?<![0-9A-Za-z])([0-9a-fA-F]{8,16})-([0-9a-fA-F]{8,16}) \(prio ")
_HEAD = re.compile(
    "(?P<kw>"
    + "|".join(
        re.escape(k)
        for k in (
            FLAT_AS_HEADER,
            AS_HEADER,
            MR_HEADER,
            FLATVIEW_HEADER,
            ROOT_PREFIX.strip() + " ",
            NO_FLATVIEW.strip(),
            'AS "',
        )
    )
    + ")"
)
_ELISION = re.compile(
    r"(?:\.{3,}|\.\.(?=\s*\Z)|…+|\[\s*(?:\.{2,}|…|snip(?:ped)?)\s*\]|<\s*(?:snip(?:ped)?|\.{3}|…)\s*>"
    r"|\(\s*(?:\.{3}|…|snip(?:ped)?)\s*\)|-+\s*(?:snip|8<|>8)\s*-*)(?P<rest>.*)\Z",
    re.IGNORECASE,
)
_QUOTE = re.compile(r"[ \t]*(?:(?:>+|//+|#+|\|)(?:[ \t]|\Z))+")
_DIFF_HUNK = re.compile(r"@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")
_DIFF_META = re.compile(r"(?:diff --git |index [0-9a-f]+\.\.|--- |\+\+\+ )")


@dataclass(slots=True)
class Token:
    """One classified line of a paste.

    :param line: 1-based line number in the original text.
    :param kind: one of the kind constants of this module.
    :param indent: columns of blank before a region line (after quoting and junk).
    :param text: the line from its anchor on: a header, or a region line's range and
        body (hex canonical: 16 lower-case digits), or an elision's words.
    :param junk: what preceded the anchor and is not indentation.
    :param markers: overflow markers before a region line.
    :param implied: the line carries :data:`IMPLIED_MARK`: a re-print of ours marked
        it as one the paste lacked, and it is read as implied again.
    """

    line: int
    kind: str
    text: str
    indent: int = 0
    junk: str = ""
    markers: int = 0
    raw: str = ""
    implied: bool = False


#: What our re-prints put before a line the paste lacked (:func:`~qmirror.text.
#: forgiving.reprint`); read as such again. Never QEMU's output, so a marked text is
#: never taken for intact output by the strict readers.
IMPLIED_MARK = "(implied)"


_SHORT_WINDOW = re.compile(r" ([0-9a-fA-F]{8,15})-([0-9a-fA-F]{8,16})((?: \[disabled\])?)\Z")
_SHORT_OFFSET = re.compile(r" @([0-9a-fA-F]{8,15})((?: (?:KVM|kvm))*)\Z")


def _canon_range(m: re.Match[str]) -> str:
    """A region line from its range on, with 16-digit lower-case hex (QEMU's spelling)."""
    body = m["body"]
    if body is not None and (len(m["start"]) < 16 or len(m["end"]) < 16):
        # QEMU 1.x on a 32-bit target printed alias windows and offsets short too.
        body = _SHORT_WINDOW.sub(lambda w: f" {w[1].lower():0>16}-{w[2].lower():0>16}{w[3]}", body)
        body = _SHORT_OFFSET.sub(lambda o: f" @{o[1].lower():0>16}{o[2]}", body)
    return f"{m['start'].lower():0>16}-{m['end'].lower():0>16} (prio {m['prio']}, {m['type']}):" + (
        "" if body is None else " " + body
    )


def classify(content: str, line: int) -> Token:
    """Say what one line is (``content`` has had its line-level repairs)."""
    if not content.strip():
        return Token(line, BLANK, "", raw=content)
    m = _REGION_ANYWHERE.search(content)
    h = _HEAD.search(content)
    if m is not None and (h is None or m.start() <= h.start()):
        prefix = content[: m.start()].expandtabs(8)
        body = _REGION.match(content, m.start())
        if body is not None:
            stripped = prefix.rstrip(" ")
            indent = len(prefix) - len(stripped)
            markers = 0
            marker = OVERFLOW_MARKER.rstrip(" ")
            while stripped.endswith(marker):
                stripped = stripped[: -len(marker)].rstrip(" ")
                markers += 1
            if markers:
                indent = max(0, indent - 1)
            markers += body["markers"].count("[")
            if "\t" in content[: m.start()]:
                stripped += "\t"  # reported as a repair by tokenize
            return Token(line, REGION, _canon_range(body), indent, stripped, markers, raw=content)
    if h is not None:
        junk = content[: h.start()].strip()
        rest = content[h.start() :].strip()
        kw = h["kw"]
        if kw in (AS_HEADER, MR_HEADER):
            return Token(
                line, TREE_HEAD, rest, len(content[: h.start()].expandtabs(8)), junk, raw=content
            )
        if kw == FLATVIEW_HEADER:
            if re.fullmatch(re.escape(FLATVIEW_HEADER) + r"\d{1,9}", rest):
                return Token(line, FLAT_HEAD, rest, junk=junk, raw=content)
        elif kw == 'AS "':
            if re.fullmatch(r'AS ".*", root: .*', rest) and (
                not junk or junk == IMPLIED_MARK or _QUOTE.fullmatch(junk)
            ):
                return Token(line, AS_LINE, rest, junk=junk, raw=content)
        elif kw == NO_FLATVIEW.strip():
            return Token(line, NO_VIEW, rest, junk=junk, raw=content)
        elif kw == ROOT_PREFIX.strip() + " ":
            return Token(line, ROOT_LINE, rest, junk=junk, raw=content)
        else:
            return Token(line, FLAT_HEAD, rest, junk=junk, raw=content)
    stripped = content.strip()
    q = _QUOTE.match(stripped)
    tail = stripped[q.end() :].lstrip() if q is not None else stripped
    if not tail:  # an empty quoted line (`>`) is a blank line
        return Token(line, BLANK, "", raw=content)
    e = _ELISION.match(tail)
    if e is not None and len(tail) <= 120:
        return Token(
            line, ELISION, e["rest"].strip(), len(content) - len(content.lstrip()), raw=content
        )
    return Token(line, JUNK, tail, raw=content)


def tokenize(text: str, *, side: str = "new") -> tuple[list[Token], list[Repair], str]:
    """Line-level repairs, then :func:`classify`; returns the tokens, the repairs and
    the text's line ending.

    :param side: of a unified diff, the side to read: ``"new"`` (``+`` and context
        lines) or ``"old"`` (``-`` and context lines); ``"none"`` when the text is no
        diff. Ignored for other texts.
    """
    repairs: list[Repair] = []
    raw = text.split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    crlf = sum(1 for ln in raw if ln.endswith("\r"))
    eol = "\r\n" if crlf * 2 >= len(raw) and crlf else "\n"
    if 0 < crlf < len(raw):
        odd = next(n for n, ln in enumerate(raw, 1) if ln.endswith("\r") != (eol == "\r\n"))
        repairs.append(
            Repair(odd, "mixed line endings: all made " + ("CR LF" if eol == "\r\n" else "LF"))
        )
    lines = [ln.rstrip("\r") for ln in raw]
    md = any(_MD_ESCAPED_RANGE.search(ln) for ln in lines)
    literal = any('\\"' in ln for ln in lines) and not any(
        re.search(r'(?<!\\)"', ln) for ln in lines if "AS " in ln
    )
    out: list[str] = []
    for n, ln in enumerate(lines, 1):
        if _UNICODE_SPACES.search(ln):
            repairs.append(Repair(n, "Unicode spaces (NBSP) made plain spaces"))
            ln = _UNICODE_SPACES.sub(" ", ln)
        if _ZERO_WIDTH.search(ln):
            repairs.append(Repair(n, "zero-width characters removed"))
            ln = _ZERO_WIDTH.sub("", ln)
        if md and "\\" in ln:
            repairs.append(Repair(n, "Markdown backslash escapes removed"))
            ln = _MD_ESCAPE.sub(r"\1", ln)
        if literal and '\\"' in ln:
            repairs.append(Repair(n, 'string-literal escapes \\" made "'))
            ln = ln.replace('\\"', '"')
        if ln != ln.rstrip() and ln.strip():
            repairs.append(Repair(n, "trailing blanks removed"))
            ln = ln.rstrip()
        out.append(ln)
    lines = out
    numbered = list(enumerate(lines, 1))
    if _is_diff(lines):
        numbered = _one_side(numbered, repairs, side)
    tokens: list[Token] = []
    for n, ln in numbered:
        tok = classify(ln, n)
        if tok.junk.endswith("\t"):
            repairs.append(Repair(n, "tabs in the indentation expanded to 8 columns"))
            tok.junk = tok.junk[:-1].rstrip()
        if tok.kind == REGION:
            r = _RANGE_DIGITS.search(ln)
            if r is not None and (len(r[1]) < 16 or len(r[2]) < 16):
                repairs.append(
                    Repair(
                        n,
                        "addresses of fewer than 16 hex digits (QEMU 1.x on "
                        "a 32-bit target) padded",
                    )
                )
            elif (
                r is not None
                and not (r[1] + r[2]).islower()
                and (r[1] + r[2]).isalnum()
                and any(c in "ABCDEF" for c in r[1] + r[2])
            ):
                repairs.append(Repair(n, "upper-case hex digits made lower-case"))
        if tok.junk == IMPLIED_MARK and tok.kind not in (JUNK, BLANK, ELISION):
            repairs.append(Repair(n, "line marked '(implied)' read as implied"))
            tok.junk = ""
            tok.implied = True
        if tok.junk and tok.kind != JUNK:
            what = (
                "quoting"
                if _QUOTE.fullmatch(tok.junk)
                else "text before the " + ("region line" if tok.kind == REGION else "header")
            )
            repairs.append(Repair(n, f"{what} removed: {_short(tok.junk)!r}"))
        tokens.append(tok)
    return tokens, repairs, eol


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _is_diff(lines: list[str]) -> bool:
    """A unified diff: hunk lines, or ``+``/``-`` lines of mtree text among `` ``-lines."""
    if any(_DIFF_HUNK.match(ln) for ln in lines):
        return True
    marked = [
        ln
        for ln in lines
        if ln[:1]
        and ln[:1] in "+-"
        and (_REGION_ANYWHERE.match(ln[1:].lstrip(" ")) or _HEAD.match(ln[1:].lstrip(" ")))
    ]
    if not marked:
        return False
    anchored = [ln for ln in lines if _REGION_ANYWHERE.search(ln) or _HEAD.search(ln)]
    return all(ln[:1] and ln[:1] in "+- " for ln in anchored)


def is_diff(text: str) -> bool:
    """Whether ``text`` is a unified diff of mtree text (see :func:`tokenize`)."""
    return _is_diff([ln.rstrip() for ln in text.split("\n")])


def _one_side(
    numbered: list[tuple[int, str]], repairs: list[Repair], side: str
) -> list[tuple[int, str]]:
    """One side of a unified diff (its own and the context lines), without their
    first column."""
    drop, keep = ("-", "+") if side == "new" else ("+", "-")
    out: list[tuple[int, str]] = []
    for n, ln in numbered:
        h = _DIFF_HUNK.match(ln)
        if h is not None and not h[0].startswith("@@ -1,"):
            # The lines before a hunk that does not start the file are not shown.
            repairs.append(Repair(n, "diff hunk header read as an elision"))
            out.append((n, "... " + h[0]))
            continue
        if h is not None or _DIFF_META.match(ln):
            repairs.append(Repair(n, "diff header line dropped"))
            continue
        if ln.startswith(drop):
            what = "removed line (the old side)" if side == "new" else "added line (the new side)"
            repairs.append(Repair(n, f"diff: {what} left for the other section"))
            continue
        if ln.startswith(keep):
            ln = " " + ln[1:]
        if ln[:1] and ln[:1] in "+ ":
            repairs.append(Repair(n, f"diff prefix {ln[0]!r} removed"))
            ln = ln[1:]
        out.append((n, ln))
    return out


# -- continuation of wrapped lines ------------------------------------------------------

#: The window that ends a complete alias line (searched from the end: linear).
_ALIAS_DONE = re.compile(r" [0-9a-f]{16}-[0-9a-f]{16}(?: \[disabled\])?\Z")
_TAIL = re.compile(
    r"(?:@[0-9a-f]{16}(?: |\Z)|@\S.* [0-9a-f]{16}-[0-9a-f]{16}|[0-9a-f]{16}-[0-9a-f]{16}\Z"
    r"|\[disabled\]|(?:owner|parent):\{|orphan\Z|(?:KVM|kvm)\Z|.*\s(?:KVM|kvm)\Z)"
)


def continues(prev: Token, nxt: Token) -> str | None:
    """The joined text when ``nxt`` (junk) is the wrapped rest of region line ``prev``."""
    if prev.kind != REGION or nxt.kind != JUNK:
        return None
    cont = nxt.text
    if not cont or len(cont) > 200 or _REGION_ANYWHERE.search(cont):
        return None
    text = prev.text
    if text.endswith("="):  # quoted-printable soft line break: no space was there
        return text[:-1] + cont
    body = text.split("): ", 1)[1] if "): " in text else ""
    sep = "" if text.endswith(" ") else " "
    if not body.strip():
        return text.rstrip() + " " + cont
    if body.startswith("alias ") and not (
        " @" in body and _ALIAS_DONE.search(split_owners(body)[0])
    ):
        return text + sep + cont
    if _TAIL.match(cont):
        return text + sep + cont
    return None
