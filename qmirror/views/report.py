"""Reports of a check: text for people (rich), JSON for programs, JUnit XML for CI.

JSON addresses are ``"0x%016x"`` strings: 64-bit values do not survive JSON consumers
that use doubles. Every attribute that was not read from the tree is listed with its
origin (rule, inference with its evidence, or default), so a real rendering
difference can be told from a gap in what QEMU printed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from qmirror.core.model import Fact, Machine, MemoryRegion, Source
from qmirror.core.units import hexs
from qmirror.errors import OutputError
from qmirror.sim.dispatch import DispatchDiff
from qmirror.text.grammar import FlatRangeLine, format_owners
from qmirror.verify.check import CheckResult
from qmirror.verify.compare import RangeDiff, ViewResult
from qmirror.views.richtext import print_wide


SCHEMA = "qmirror.check/1"


def region_path(mr: MemoryRegion) -> str:
    """``system › pci › pc.bios``: the region and the containers above it."""
    return " › ".join(m.label for m in mr.path())


def fact_rows(machine: Machine) -> list[tuple[str, Fact]]:
    """Every attribute not read from the text, per region (path, fact), rules and
    inferences first."""
    rows = [
        (region_path(mr), f)
        for mr in machine.regions()
        for f in mr.facts
        if f.source is not Source.TEXT
    ]
    rows += [("(machine)", f) for f in machine.facts]
    order = {
        Source.RULE: 0,
        Source.HARVESTED: 1,
        Source.INFERRED: 2,
        Source.DEFAULT: 3,
        Source.TEXT: 4,
    }
    rows.sort(key=lambda row: order[row[1].source])
    return rows


def _range_json(r: FlatRangeLine | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "start": hexs(r.start),
        "end": hexs(r.end),
        "priority": r.priority,
        "type": ("nv-" if r.nonvolatile else "") + r.type_word,
        "name": r.name,
        "offset": hexs(r.offset),
        "owner": None if r.ownership is None else format_owners(r.ownership).strip(),
        "accel": list(r.accel),
    }


def _diff_json(d: RangeDiff) -> dict[str, Any]:
    return {
        "start": hexs(d.start),
        "kind": d.kind,
        "fields": d.fields,
        "qemu": _range_json(d.qemu),
        "ours": _range_json(d.ours),
        "explanation": d.explanation,
    }


def _dispatch_diff_json(d: DispatchDiff) -> dict[str, Any]:
    return {
        "where": d.where,
        "kind": d.kind,
        "qemu": d.qemu,
        "ours": d.ours,
        "explanation": d.explanation,
    }


def _view_json(v: ViewResult) -> dict[str, Any]:
    out = {
        "address_spaces": v.address_spaces,
        "status": v.status,
        "qemu_flatview_number": v.qemu_number,
        "root": {"qemu": v.qemu_root, "ours": v.our_root},
        "ranges": v.ranges,
        "differences": [_diff_json(d) for d in v.diffs],
        "deepdiff": v.deepdiff,
        "note": v.note,
    }
    if v.dispatch_compared:
        out["dispatch"] = {
            "sections": v.dispatch_sections,
            "nodes": v.dispatch_nodes,
            "differences": [_dispatch_diff_json(d) for d in v.dispatch_diffs],
        }
    return out


def to_json(result: CheckResult, *, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON document of a check (``--format json``)."""
    rows = fact_rows(result.machine)
    counts = Counter(f.source.value for _, f in rows)
    return {
        "schema": SCHEMA,
        "result": result.comparison.result,
        "inputs": inputs or {},
        "strict": result.strict,
        "accelerator": {
            "value": result.accel.value,
            "source": result.accel.source.value,
            "detail": result.accel.detail,
            "compared": result.comparison.accel_compared,
            "unpredicted_words": result.comparison.accel_unpredicted,
        },
        "flatviews": [_view_json(v) for v in result.comparison.views],
        "dispatch_page_bits": None
        if result.page_bits is None
        else {
            "value": result.page_bits.value,
            "source": result.page_bits.source.value,
            "detail": result.page_bits.detail,
        },
        "facts": [
            {
                "region": path,
                "gap": f.gap,
                "attribute": f.attribute,
                "value": f.value,
                "source": f.source.value,
                "detail": f.detail,
            }
            for path, f in rows
        ],
        "fact_counts": dict(counts),
    }


def write_junit(result: CheckResult, path: Path, *, name: str = "qmirror.check") -> None:
    """One ``<testsuite>``, one ``<testcase>`` per FlatView, ``<failure>`` for mismatches."""
    views = result.comparison.views
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(len(views)),
        failures=str(sum(not v.ok for v in views)),
        errors="0",
    )
    for v in views:
        case = ET.SubElement(
            suite, "testcase", classname=name, name="FlatView " + ", ".join(v.address_spaces)
        )
        if not v.ok:
            message = f"{v.status}: {len(v.diffs)} ranges differ"
            if v.dispatch_diffs:
                message += f", {len(v.dispatch_diffs)} dispatch differences"
            fail = ET.SubElement(case, "failure", message=message)
            fail.text = "\n".join(_diff_lines(v)) or v.note
    _write_xml(suite, path)


def junit_problem(path: Path) -> str | None:
    """Why a JUnit report cannot be written to *path*, or ``None`` (checked up front, so
    that a VM is not read for nothing)."""
    if path.is_dir():
        return f"--junit-xml {path}: is a directory"
    parent = path.parent
    if not parent.is_dir():
        return f"--junit-xml {path}: no such directory {parent}"
    return None


def _write_xml(root: ET.Element, path: Path) -> None:
    try:
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def junit_error(path: Path, message: str, *, name: str = "qmirror.check") -> None:
    """A JUnit file that records trouble (exit code 2) as an ``<error>``."""
    suite = ET.Element("testsuite", name=name, tests="1", failures="0", errors="1")
    case = ET.SubElement(suite, "testcase", classname=name, name="check")
    err = ET.SubElement(case, "error", message=message.splitlines()[0] if message else "error")
    err.text = message
    _write_xml(suite, path)


def _fmt(r: FlatRangeLine | None) -> str:
    if r is None:
        return "—"
    off = f" @{r.offset:016x}" if r.offset else ""
    acc = "".join(" " + w for w in r.accel)
    nv = "nv-" if r.nonvolatile else ""
    return f"{r.start:016x}-{r.end:016x} (prio {r.priority}, {nv}{r.type_word}): {r.name}{off}{acc}"


def _diff_lines(v: ViewResult) -> list[str]:
    out = []
    if v.note:
        out.append(v.note)
    for d in v.diffs:
        out.append(f"{d.kind} at {d.start:016x}")
        out.append(f"  QEMU: {_fmt(d.qemu)}")
        out.append(f"  ours: {_fmt(d.ours)}")
        out.append(f"  {d.explanation}")
    shown = v.dispatch_diffs[:_DISPATCH_SHOWN]
    for dd in shown:
        out.append(f"dispatch {dd.where}: {dd.kind}")
        out.append(f"  QEMU: {dd.qemu or '—'}")
        out.append(f"  ours: {dd.ours or '—'}")
        if dd.explanation:
            out.append(f"  {dd.explanation}")
    if len(v.dispatch_diffs) > len(shown):
        out.append(
            f"… and {len(v.dispatch_diffs) - len(shown)} more dispatch differences "
            "(all of them in --format json)"
        )
    return out


#: Dispatch differences listed per FlatView in text: a shifted section numbering
#: changes every later section and node, and the first few say why.
_DISPATCH_SHOWN = 12


def match_summary(result: CheckResult) -> str:
    """What a match rests on, in one line: the views and ranges compared, the accelerator,
    and how many attributes came from rules, harvested facts, inference and defaults
    (inference is always counted: a match that leans on QEMU's own -f says so)."""
    comp = result.comparison
    n_ranges = sum(v.ranges for v in comp.views)
    counts = Counter(f.source for _, f in fact_rows(result.machine))
    inferred = counts[Source.INFERRED]
    harvested = counts[Source.HARVESTED]
    return (
        f"{len(comp.views)} FlatViews, {n_ranges} QEMU ranges; accelerator "
        f"{result.accel.value or 'unknown'} ({result.accel.source.value}); "
        f"{counts[Source.RULE]} attributes from rules, "
        + (
            f"{harvested} harvested from QEMU {result.loaded.harvest_table.version}, "
            if harvested and result.loaded.harvest_table is not None
            else ""
        )
        + (f"{inferred} inferred from QEMU's -f, " if inferred else "")
        + f"{counts[Source.DEFAULT]} defaults (-v: per FlatView, with sources)"
    )


def print_text(result: CheckResult, console: Console, *, verbose: bool = False) -> None:
    """A verdict line, one line per FlatView, the differences, and where facts came from.

    A match prints the verdict line alone (with :func:`match_summary`) unless *verbose*.
    """
    comp = result.comparison
    if comp.ok and not verbose:
        console.print(f"[bold green]MATCH[/]: {escape(match_summary(result))}", highlight=False)
        return
    n_ranges = sum(v.ranges for v in comp.views)
    style = "bold green" if comp.ok else "bold red"
    console.print(
        f"[{style}]{comp.result.upper()}[/]: {len(comp.views)} FlatViews, {n_ranges} QEMU ranges",
        highlight=False,
    )
    for v in comp.views:
        names = ", ".join(f'"{n}"' for n in v.address_spaces[:4])
        if len(v.address_spaces) > 4:
            names += f" and {len(v.address_spaces) - 4} more"
        mark = "[green]✓[/]" if v.ok else "[red]✗[/]"
        root = v.qemu_root if v.qemu_root is not None else v.our_root
        what = {
            "match": f"{v.ranges} ranges match",
            "mismatch": f"{len(v.diffs)} of {v.ranges} ranges differ",
            "only-qemu": "only in QEMU's output",
            "only-ours": "only in our rendering",
        }
        state = what[v.status]
        if v.dispatch_compared and v.status in ("match", "mismatch"):
            if v.status == "match":
                state = (
                    f"{v.ranges} ranges and the dispatch ({v.dispatch_sections} sections, "
                    f"{v.dispatch_nodes} nodes) match"
                )
            elif v.dispatch_diffs:
                state = (
                    f"{v.ranges} ranges match" if not v.diffs else state
                ) + f"; {len(v.dispatch_diffs)} dispatch differences"
        console.print(
            f"  {mark} FlatView of {escape(names)} (root {escape(root or '(none)')}): {state}",
            highlight=False,
        )
        if not v.ok:
            _print_mismatch(v, console, verbose=verbose)
    acc = result.accel
    console.print(
        f"Accelerator: {acc.value or 'unknown'} ({acc.source.value}: {escape(acc.detail)})",
        highlight=False,
    )
    if result.page_bits is not None:
        pb = result.page_bits
        console.print(
            f"Dispatch: {1 << pb.value}-byte target pages ({pb.source.value}: "
            f"{pb.detail}); [MRU] ignored",
            highlight=False,
            markup=False,
        )
    if comp.accel_unpredicted:
        console.print(
            f"  {comp.accel_unpredicted} accelerator words in QEMU's output were "
            "not predicted (reported, not compared)",
            highlight=False,
        )
    rows = fact_rows(result.machine)
    counts = Counter(f.source for _, f in rows)
    console.print(
        f"Not read from the tree: {counts[Source.RULE]} from rules, "
        f"{counts[Source.HARVESTED]} harvested from the same QEMU version, "
        f"{counts[Source.INFERRED]} inferred from QEMU's -f, "
        f"{counts[Source.DEFAULT]} defaults" + (" (strict: no inference)" if result.strict else ""),
        highlight=False,
    )
    grouped: dict[tuple[str, str, str, str, str, str], int] = {}
    for path, f in rows:
        if f.source is Source.DEFAULT and not verbose:
            continue
        detail = f.detail if (verbose or f.source is not Source.RULE) else _short_rule(f.detail)
        key = (f.source.value, f.gap, path, f.attribute, f.value, detail)
        grouped[key] = grouped.get(key, 0) + 1
    for (source, gap, path, attribute, value, detail), n in grouped.items():
        times = f" (×{n})" if n > 1 else ""
        console.print(
            f"  {source:8} {gap} {escape(path)}{times}: {attribute} = {escape(value)}"
            f"  [dim]— {escape(detail)}[/]",
            highlight=False,
        )
    if not verbose and counts[Source.DEFAULT]:
        console.print("  (defaults, and rule sources in full, with --verbose)", highlight=False)


#: Range differences shown per FlatView in text (all of them with --verbose and in JSON).
_RANGES_SHOWN = 40
#: RangeDiff field → (label, style of QEMU's value, style of ours) when it differs.
_QEMU_STYLE, _OURS_STYLE = "bold red", "bold green"


def _cells(r: FlatRangeLine | None, fields: list[str], width: int, style: str, whole: bool) -> Text:
    """One side of a table row: ``end prio type name @offset words``, differing fields
    highlighted (all of it for a range only this side has)."""
    if r is None:
        return Text("—", style="dim")
    text = Text()

    def part(value: str, field_name: str, sep: str = " ") -> None:
        if text:
            text.append(sep)
        text.append(value, style=style if whole or field_name in fields else "")

    part(f"{r.end:0{width}x}", "end")
    part(f"prio {r.priority}", "priority")
    part(
        ("nv-" if r.nonvolatile else "") + r.type_word,
        "type_word" if "type_word" in fields else "nonvolatile",
    )
    part(r.name, "name")
    if r.offset or "offset" in fields:
        part(f"@{r.offset:x}", "offset")
    if r.accel or "accel" in fields:
        part(" ".join(r.accel) or "(no KVM)", "accel")
    if "ownership" in fields and r.ownership is not None:
        part(format_owners(r.ownership).strip(), "ownership")
    return text


def _print_mismatch(v: ViewResult, console: Console, *, verbose: bool) -> None:
    """A mismatching FlatView: QEMU's ranges and ours side by side (differing fields
    highlighted), then why, per range: the path of regions and aliases that decided ours."""
    if v.note:
        console.print("      " + escape(v.note), highlight=False)
    diffs = v.diffs if verbose else v.diffs[:_RANGES_SHOWN]
    if diffs:
        top = max(
            max([d.start] + [r.end for r in (d.qemu, d.ours) if r is not None]) for d in diffs
        )
        width = next(w for w in (4, 8, 12, 16) if top < 1 << (4 * w))
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
        table.add_column("#", justify="right", style="dim")
        table.add_column("start")
        table.add_column("QEMU: end, prio, type, name")
        table.add_column("ours")
        for n, d in enumerate(diffs, 1):
            table.add_row(
                str(n),
                f"{d.start:0{width}x}",
                _cells(d.qemu, d.fields, width, _QEMU_STYLE, d.kind == "missing"),
                _cells(d.ours, d.fields, width, _OURS_STYLE, d.kind == "extra"),
            )
        print_wide(console, table, indent=6)
        nothing = [
            n
            for n, d in enumerate(diffs, 1)
            if d.kind == "missing" and d.ours is None and "renders nothing" in d.explanation
        ]
        if nothing:
            console.print(
                f"      [dim]{_runs(nothing)}[/]: QEMU has a range there and our "
                "model renders nothing",
                highlight=False,
            )
        for n, d in enumerate(diffs, 1):
            if n not in nothing:
                console.print(
                    f"      [dim]{n:>3}[/] {d.kind}: {escape(d.explanation)}", highlight=False
                )
        if len(v.diffs) > len(diffs):
            console.print(
                f"      … {len(v.diffs) - len(diffs)} more ranges differ (all of "
                "them with --verbose or --format json)",
                highlight=False,
            )
    shown = v.dispatch_diffs[:_DISPATCH_SHOWN]
    for dd in shown:
        for line in (
            f"dispatch {dd.where}: {dd.kind}",
            f"  QEMU: {dd.qemu or '—'}",
            f"  ours: {dd.ours or '—'}",
            *([f"  {dd.explanation}"] if dd.explanation else []),
        ):
            console.print("      " + escape(line), highlight=False)
    if len(v.dispatch_diffs) > len(shown):
        console.print(
            f"      … and {len(v.dispatch_diffs) - len(shown)} more dispatch "
            "differences (all of them in --format json)",
            highlight=False,
        )


def _runs(numbers: list[int]) -> str:
    """``#1–5, 7, 9–12`` for sorted row numbers."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"#{start}" if start == prev else f"#{start}–{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def _short_rule(detail: str) -> str:
    """``rule-id (file.c)`` out of a rule fact's detail."""
    rule_id, _, rest = detail.partition(": ")
    source_file = rest.split(":", 1)[0]
    return f"{rule_id} ({source_file})" if source_file else rule_id
