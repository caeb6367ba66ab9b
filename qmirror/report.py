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

from rich.console import Console
from rich.markup import escape

from qmirror.check import CheckResult
from qmirror.compare import RangeDiff, ViewResult
from qmirror.grammar import FlatRangeLine, format_owners
from qmirror.model import Fact, Machine, MemoryRegion, Source


SCHEMA = "qmirror.check/1"


def hexs(value: int) -> str:
    """An address for JSON: ``"0x%016x"``."""
    return f"0x{value:016x}"


def region_path(mr: MemoryRegion) -> str:
    """``system › pci › pc.bios``: the region and the containers above it."""
    return " › ".join(m.label for m in mr.path())


def fact_rows(machine: Machine) -> list[tuple[str, Fact]]:
    """Every attribute not read from the text, per region (path, fact), rules and
    inferences first."""
    rows = [(region_path(mr), f) for mr in machine.regions() for f in mr.facts
            if f.source is not Source.TEXT]
    rows += [("(machine)", f) for f in machine.facts]
    order = {Source.RULE: 0, Source.INFERRED: 1, Source.DEFAULT: 2, Source.TEXT: 3}
    rows.sort(key=lambda row: order[row[1].source])
    return rows


def _range_json(r: FlatRangeLine | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "start": hexs(r.start), "end": hexs(r.end), "priority": r.priority,
        "type": ("nv-" if r.nonvolatile else "") + r.type_word, "name": r.name,
        "offset": hexs(r.offset),
        "owner": None if r.ownership is None else format_owners(r.ownership).strip(),
        "accel": list(r.accel),
    }


def _diff_json(d: RangeDiff) -> dict[str, Any]:
    return {"start": hexs(d.start), "kind": d.kind, "fields": d.fields,
            "qemu": _range_json(d.qemu), "ours": _range_json(d.ours),
            "explanation": d.explanation}


def _view_json(v: ViewResult) -> dict[str, Any]:
    return {
        "address_spaces": v.address_spaces, "status": v.status,
        "qemu_flatview_number": v.qemu_number, "root": {"qemu": v.qemu_root, "ours": v.our_root},
        "ranges": v.ranges, "differences": [_diff_json(d) for d in v.diffs],
        "deepdiff": v.deepdiff, "note": v.note,
    }


def to_json(result: CheckResult, *, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON document of a check (``--format json``)."""
    rows = fact_rows(result.machine)
    counts = Counter(f.source.value for _, f in rows)
    return {
        "schema": SCHEMA,
        "result": result.comparison.result,
        "inputs": inputs or {},
        "strict": result.strict,
        "accelerator": {"value": result.accel.value, "source": result.accel.source.value,
                        "detail": result.accel.detail,
                        "compared": result.comparison.accel_compared,
                        "unpredicted_words": result.comparison.accel_unpredicted},
        "flatviews": [_view_json(v) for v in result.comparison.views],
        "facts": [{"region": path, "gap": f.gap, "attribute": f.attribute, "value": f.value,
                   "source": f.source.value, "detail": f.detail} for path, f in rows],
        "fact_counts": dict(counts),
    }


def write_junit(result: CheckResult, path: Path, *, name: str = "qmirror.check") -> None:
    """One ``<testsuite>``, one ``<testcase>`` per FlatView, ``<failure>`` for mismatches."""
    views = result.comparison.views
    suite = ET.Element("testsuite", name=name, tests=str(len(views)),
                       failures=str(sum(not v.ok for v in views)), errors="0")
    for v in views:
        case = ET.SubElement(suite, "testcase", classname=name,
                             name="FlatView " + ", ".join(v.address_spaces))
        if not v.ok:
            fail = ET.SubElement(case, "failure", message=f"{v.status}: {len(v.diffs)} ranges "
                                 "differ")
            fail.text = "\n".join(_diff_lines(v)) or v.note
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def junit_error(path: Path, message: str, *, name: str = "qmirror.check") -> None:
    """A JUnit file that records trouble (exit code 2) as an ``<error>``."""
    suite = ET.Element("testsuite", name=name, tests="1", failures="0", errors="1")
    case = ET.SubElement(suite, "testcase", classname=name, name="check")
    err = ET.SubElement(case, "error", message=message.splitlines()[0] if message else "error")
    err.text = message
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


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
    return out


def print_text(result: CheckResult, console: Console, *, verbose: bool = False) -> None:
    """A verdict line, one line per FlatView, the differences, and where facts came from."""
    comp = result.comparison
    n_ranges = sum(v.ranges for v in comp.views)
    style = "bold green" if comp.ok else "bold red"
    console.print(f"[{style}]{comp.result.upper()}[/]: {len(comp.views)} FlatViews, "
                  f"{n_ranges} QEMU ranges", highlight=False)
    for v in comp.views:
        names = ", ".join(f'"{n}"' for n in v.address_spaces[:4])
        if len(v.address_spaces) > 4:
            names += f" and {len(v.address_spaces) - 4} more"
        mark = "[green]✓[/]" if v.ok else "[red]✗[/]"
        root = v.qemu_root if v.qemu_root is not None else v.our_root
        what = {"match": f"{v.ranges} ranges match",
                "mismatch": f"{len(v.diffs)} of {v.ranges} ranges differ",
                "only-qemu": "only in QEMU's output", "only-ours": "only in our rendering"}
        console.print(f"  {mark} FlatView of {escape(names)} (root {escape(root or '(none)')}): "
                      f"{what[v.status]}", highlight=False)
        for line in _diff_lines(v) if not v.ok else []:
            console.print("      " + escape(line), highlight=False)
    acc = result.accel
    console.print(f"Accelerator: {acc.value or 'unknown'} ({acc.source.value}: "
                  f"{escape(acc.detail)})", highlight=False)
    if comp.accel_unpredicted:
        console.print(f"  {comp.accel_unpredicted} accelerator words in QEMU's output were "
                      "not predicted (reported, not compared)", highlight=False)
    rows = fact_rows(result.machine)
    counts = Counter(f.source for _, f in rows)
    console.print(f"Not read from the tree: {counts[Source.RULE]} from rules, "
                  f"{counts[Source.INFERRED]} inferred from QEMU's -f, "
                  f"{counts[Source.DEFAULT]} defaults"
                  + (" (strict: no inference)" if result.strict else ""), highlight=False)
    grouped: dict[tuple[str, str, str, str, str, str], int] = {}
    for path, f in rows:
        if f.source is Source.DEFAULT and not verbose:
            continue
        detail = f.detail if (verbose or f.source is not Source.RULE) else _short_rule(f.detail)
        key = (f.source.value, f.gap, path, f.attribute, f.value, detail)
        grouped[key] = grouped.get(key, 0) + 1
    for (source, gap, path, attribute, value, detail), n in grouped.items():
        times = f" (×{n})" if n > 1 else ""
        console.print(f"  {source:8} {gap} {escape(path)}{times}: {attribute} = {escape(value)}"
                      f"  [dim]— {escape(detail)}[/]", highlight=False)
    if not verbose and counts[Source.DEFAULT]:
        console.print("  (defaults, and rule sources in full, with --verbose)", highlight=False)


def _short_rule(detail: str) -> str:
    """``rule-id (file.c)`` out of a rule fact's detail."""
    rule_id, _, rest = detail.partition(": ")
    source_file = rest.split(":", 1)[0]
    return f"{rule_id} ({source_file})" if source_file else rule_id
