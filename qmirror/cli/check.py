"""``qmirror check``: our FlatViews against QEMU's, from saved texts or from live VMs.

Offline: ``--tree TREE.txt --flat FLAT.txt``. Live: one or more targets
(``--socket``, ``--tcp``, ``--targets-file``, positional TARGETs, ``--launch -- QEMU
ARGS``), read concurrently, each within its own ``--timeout``, and reported per VM.
Exit 0 when every target matches, 1 on any mismatch, 2 on any trouble.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qmirror.cli._common import (
    EXIT_MATCH,
    EXIT_MISMATCH,
    EXIT_TROUBLE,
    one_stdin,
    read_text,
    run_async,
    write_stdout,
)
from qmirror.cli._options import model_options, text_options
from qmirror.errors import OutputError


if TYPE_CHECKING:
    from rich.console import Console

    from qmirror.live.livecheck import Outcome
    from qmirror.live.targets import Target
    from qmirror.verify.check import CheckResult


MULTI_SCHEMA = "qmirror.check-targets/1"


# -- offline -------------------------------------------------------------------------


def _ignore(args: argparse.Namespace, results: list[CheckResult], err: Console) -> None:
    """Leave out what `[tool.qmirror.ignore]` (or ``QMIRROR_IGNORE_*``) says to ignore."""
    from qmirror.live.config import from_args
    from qmirror.verify.ignore import apply_to_check

    rules = from_args(args).ignore
    dropped = sum(apply_to_check(r, rules) for r in results)
    if dropped:
        err.print(
            f"qmirror check: {dropped} differences left out by the ignore rules", highlight=False
        )


def _offline(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.cli.offline import report_repairs, text_dialect
    from qmirror.verify.check import check
    from qmirror.views.report import print_text, to_json, write_junit

    one_stdin(args.tree, args.flat)
    dialect = text_dialect(args)
    result = check(
        read_text(args.tree),
        read_text(args.flat),
        accel=args.accel,
        strict=args.strict,
        rules=not args.no_rules,
        tree_name=args.tree,
        flat_name=args.flat,
        dispatch=args.dispatch,
        page_bits=args.page_bits,
        dialect=dialect,
        lenient=args.lenient,
        qemu_version=args.qemu_version,
    )
    report_repairs(err, args.tree, result.loaded.document.repairs)
    report_repairs(err, args.flat, result.qemu.repairs)
    _ignore(args, [result], err)
    if args.junit_xml:
        write_junit(result, Path(args.junit_xml))
    if args.format == "json":
        doc = to_json(result, inputs={"tree": args.tree, "flat": args.flat})
        repairs = [
            {"file": name, "line": r.line, "what": r.what}
            for name, doc_repairs in (
                (args.tree, result.loaded.document.repairs),
                (args.flat, result.qemu.repairs),
            )
            for r in doc_repairs
        ]
        partial = result.loaded.document.partial or result.qemu.partial
        if repairs or partial:  # only for pastes (--lenient): intact output is unchanged
            doc |= {"repairs": repairs, "partial": partial}
        write_stdout(json.dumps(doc, indent=2) + "\n")
    else:
        print_text(result, out, verbose=args.verbose)
    return EXIT_MATCH if result.ok else EXIT_MISMATCH


# -- live ----------------------------------------------------------------------------


def _about(o: Outcome) -> str:
    snap = o.snapshot
    if snap is None or snap.info is None:
        return ""
    i = snap.info
    tries = f"{snap.tries} {'try' if snap.tries == 1 else 'tries'}"
    paused = ", paused for the reading" if snap.paused else ""
    booted = f", booted {snap.boot_seconds:g}s" if snap.boot_seconds else ""
    return (
        f" (QEMU {i['qemu_version']}, {i['machine']}, {i['accelerator']}, {i['status']}"
        f"{booted}{paused}; {tries})"
    )


def _print_outcomes(outcomes: list[Outcome], out: Console, err: Console, *, verbose: bool) -> None:
    from rich.markup import escape

    from qmirror.views.report import match_summary, print_text

    spaced = False  # a blank line after each multi-line report
    for o in outcomes:
        style = {"match": "bold green", "mismatch": "bold red"}.get(o.verdict, "bold red")
        line = f"[{style}]{o.verdict.upper()}[/] {escape(o.target.label)}{escape(_about(o))}"
        brief = o.result is not None and o.result.ok and not verbose
        if spaced:
            out.print("", highlight=False)
        spaced = not brief
        if brief:
            assert o.result is not None
            # One verdict line per matching VM; -v gives the full report.
            out.print(f"{line}: {escape(match_summary(o.result))}", highlight=False)
            continue
        out.print(line, highlight=False)
        if o.error is not None:
            out.print("  " + escape(o.error).replace("\n", "\n  "), highlight=False)
        if o.result is not None:
            print_text(o.result, out, verbose=verbose)
        if verbose:
            err.print(
                f"{o.target.label}: fetch {o.fetch_seconds * 1000:.1f} ms, parse+render+"
                f"compare {o.check_seconds * 1000:.1f} ms",
                highlight=False,
                markup=False,
            )
    if len(outcomes) > 1:
        counts = {v: sum(o.verdict == v for o in outcomes) for v in ("match", "mismatch", "error")}
        out.print(
            f"{len(outcomes)} targets: {counts['match']} match, {counts['mismatch']} "
            f"mismatch, {counts['error']} error",
            highlight=False,
        )


def _outcome_json(o: Outcome) -> dict[str, Any]:
    from qmirror.views.report import to_json

    doc: dict[str, Any]
    if o.result is not None:
        doc = to_json(o.result, inputs=o.inputs())
    else:
        doc = {"result": "error", "error": o.error}
    doc["target"] = {"label": o.target.label, "kind": o.target.kind}
    if o.target.kind == "libvirt":
        doc["target"].update(domain=o.target.domain, uri=o.target.uri)
    doc["metadata"] = o.snapshot.metadata() if o.snapshot is not None else None
    if o.error is not None:
        doc["error"] = o.error
    doc["timing"] = {
        "fetch_seconds": round(o.fetch_seconds, 6),
        "check_seconds": round(o.check_seconds, 6),
    }
    return doc


def _overall(outcomes: list[Outcome]) -> str:
    if any(o.verdict == "error" for o in outcomes):
        return "error"
    return "mismatch" if any(o.verdict == "mismatch" for o in outcomes) else "match"


def _junit(outcomes: list[Outcome], path: Path) -> None:
    """``<testsuites>`` with one ``<testsuite>`` per target (report.py writes each)."""
    from qmirror.views.report import junit_error, write_junit

    root = ET.Element("testsuites", name="qmirror.check")
    with tempfile.TemporaryDirectory(prefix="qmirror-junit-") as tmp:
        for n, o in enumerate(outcomes):
            one = Path(tmp) / f"{n}.xml"
            name = f"qmirror.check {o.target.label}"
            if o.result is not None:
                write_junit(o.result, one, name=name)
            else:
                junit_error(one, o.error or "error", name=name)
            root.append(ET.parse(one).getroot())
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in root)))
    try:
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _live(args: argparse.Namespace, targets: list[Target], out: Console, err: Console) -> int:
    from qmirror.live.livecheck import check_targets

    outcomes = run_async(
        check_targets(
            targets,
            pause=args.pause,
            timeout=args.timeout,
            boot=args.boot,
            accel=args.accel,
            strict=args.strict,
            rules=not args.no_rules,
        )
    )
    _ignore(args, [o.result for o in outcomes if o.result is not None], err)
    if args.junit_xml:
        _junit(outcomes, Path(args.junit_xml))
    if args.format == "json":
        if len(outcomes) == 1:
            doc = _outcome_json(outcomes[0])
        else:
            doc = {
                "schema": MULTI_SCHEMA,
                "result": _overall(outcomes),
                "targets": [_outcome_json(o) for o in outcomes],
            }
        write_stdout(json.dumps(doc, indent=2) + "\n")
    else:
        _print_outcomes(outcomes, out, err, verbose=args.verbose)
    for o in outcomes:
        if o.error is not None:
            err.print(f"qmirror check: {o.target.label}: {o.error}", highlight=False, markup=False)
    overall = _overall(outcomes)
    return {"match": EXIT_MATCH, "mismatch": EXIT_MISMATCH}.get(overall, EXIT_TROUBLE)


def _wants_targets(args: argparse.Namespace) -> bool:
    """Whether the command line names any live target (without importing the live layer)."""
    return bool(
        args.targets
        or args.socket
        or args.tcp
        or getattr(args, "targets_file", None)
        or args.launch
        or args.passthrough
        or args.boot is not None
    )


def cmd_check(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.views.report import junit_problem

    if args.junit_xml:
        problem = junit_problem(Path(args.junit_xml))
        if problem is not None:
            err.print(f"qmirror check: {problem}", highlight=False, markup=False)
            args.junit_xml = None  # nowhere to record this trouble either
            return EXIT_TROUBLE
    targets: list[Target] = []
    if _wants_targets(args):  # an offline check of saved texts imports no live layer
        from qmirror.live.targets import targets_from_args

        targets = targets_from_args(args, positional=args.targets)
    offline = args.tree is not None or args.flat is not None
    if offline and targets:
        err.print(
            "qmirror check: give either --tree/--flat or live targets, not both", highlight=False
        )
        return EXIT_TROUBLE
    if targets and args.dispatch:
        err.print(
            "qmirror check: --dispatch compares saved texts for now: save `info mtree` "
            "and `info mtree -f -d` and give --tree/--flat",
            highlight=False,
            markup=False,
        )
        return EXIT_TROUBLE
    if targets:
        return _live(args, targets, out, err)
    if args.tree is None or args.flat is None:
        err.print(
            "qmirror check: give --tree TREE.txt and --flat FLAT.txt, or a live target "
            "(--socket PATH, --tcp HOST:PORT, --launch -- QEMU ARGS, TARGET)",
            highlight=False,
            markup=False,
        )
        return EXIT_TROUBLE
    return _offline(args, out, err)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from qmirror.live.options import add_target_options

    p = sub.add_parser(
        "check",
        help="compare our FlatViews with QEMU's `info mtree -f` (saved or live)",
        description="Render the tree and compare with QEMU's flat output, from saved texts "
        "(--tree/--flat) or from live VMs (checked concurrently, reported per "
        "VM). Exit 0: match, 1: mismatch, 2: trouble.",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="a live monitor (unix:PATH, a socket path, tcp:HOST:PORT, HOST:PORT), "
        "a libvirt domain (libvirt:NAME or libvirt:UUID, see --connect) "
        "or a snapshot directory",
    )
    p.add_argument("--tree", metavar="TREE.txt", help="`info mtree` output ([-o] [-D])")
    p.add_argument("--flat", metavar="FLAT.txt", help="`info mtree -f` output ([-o])")
    model_options(p)
    text_options(p, lenient=False, launch=True)
    p.add_argument(
        "--dispatch",
        action="store_true",
        help="also compare the dispatch dumps (--flat from `info mtree -f -d`; [MRU] is ignored)",
    )
    p.add_argument(
        "--page-bits",
        type=int,
        choices=range(10, 17),
        metavar="N",
        help="the target's page bits for --dispatch (default: read off QEMU's "
        "subpage sections, else 12)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--junit-xml",
        metavar="PATH",
        help="also write a JUnit XML report (one testsuite per live target)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="list defaults too (live: and the time each target took, on stderr)",
    )
    # --qemu-version (text_options) names the texts' QEMU; with --launch it also runs that
    # QEMU from scripts/qemu-matrix.
    add_target_options(p, qemu_version=False)
    p.set_defaults(func=cmd_check)
