"""``qmirror check|render|format`` on texts saved from QEMU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from qmirror.check import ACCELS, check, decide_accel, load_tree, render_document
from qmirror.cli._common import EXIT_MATCH, EXIT_MISMATCH, EXIT_TROUBLE, read_text, write_stdout
from qmirror.flattext import parse_flat, print_flat
from qmirror.gaps import infer
from qmirror.model import Source
from qmirror.report import fact_rows, print_text, to_json, write_junit
from qmirror.treetext import parse_tree_document, print_tree


def cmd_check(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.tree is None or args.flat is None:
        err.print("qmirror check: give --tree TREE.txt and --flat FLAT.txt", highlight=False)
        return EXIT_TROUBLE
    result = check(read_text(args.tree), read_text(args.flat), accel=args.accel, strict=args.strict,
                   rules=not args.no_rules, tree_name=args.tree, flat_name=args.flat)
    if args.junit_xml:
        write_junit(result, Path(args.junit_xml))
    if args.format == "json":
        doc = to_json(result, inputs={"tree": args.tree, "flat": args.flat})
        write_stdout(json.dumps(doc, indent=2) + "\n")
    else:
        print_text(result, out, verbose=args.verbose)
    return EXIT_MATCH if result.ok else EXIT_MISMATCH


def cmd_render(args: argparse.Namespace, out: Console, err: Console) -> int:
    loaded = load_tree(read_text(args.tree), filename=args.tree, rules=not args.no_rules)
    qemu = parse_flat(read_text(args.flat), filename=args.flat) if args.flat else None
    if qemu is not None and not args.strict:
        infer(loaded.machine, qemu)
    decision = decide_accel(loaded.machine, qemu, args.accel, strict=args.strict)
    doc = render_document(loaded.machine, owners=args.owners, accel=decision.value)
    doc.eol = loaded.document.eol
    write_stdout(print_flat(doc))
    inferred = [(p, f) for p, f in fact_rows(loaded.machine) if f.source is Source.INFERRED]
    for path, f in inferred:
        err.print(f"inferred {f.gap} {path}: {f.attribute} = {f.value} ({f.detail})",
                  highlight=False, markup=False)
    if decision.value is None:
        err.print("accelerator unknown: no accelerator words predicted (use --accel)",
                  highlight=False)
    return EXIT_MATCH


def cmd_format(args: argparse.Namespace, out: Console, err: Console) -> int:
    if (args.tree is None) == (args.flat is None):
        err.print("qmirror format: give exactly one of --tree or --flat", highlight=False)
        return EXIT_TROUBLE
    if args.tree is not None:
        doc = parse_tree_document(read_text(args.tree), filename=args.tree)
        machine = load_tree(read_text(args.tree), filename=args.tree, rules=False).machine
        write_stdout(print_tree(machine, owners=doc.owners, disabled=doc.shows_disabled,
                                 eol=doc.eol))
    else:
        write_stdout(print_flat(parse_flat(read_text(args.flat), filename=args.flat)))
    return EXIT_MATCH


def model_options(p: argparse.ArgumentParser) -> None:
    """Options about how the model is completed, shared by the commands that render."""
    p.add_argument("--accel", choices=ACCELS, default="auto",
                   help="accelerator to predict `KVM` words for (default auto: from the tree "
                        "where it can tell, else from QEMU's -f unless --strict)")
    p.add_argument("--strict", action="store_true",
                   help="no inference from QEMU's -f: rule table and defaults only")
    p.add_argument("--no-rules", action="store_true",
                   help="do not apply the rule table (to see what inference alone does)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="compare our FlatViews with QEMU's `info mtree -f`",
                       description="Render the tree and compare with QEMU's flat output. "
                                   "Exit 0: match, 1: mismatch, 2: trouble.")
    p.add_argument("--tree", metavar="TREE.txt", help="`info mtree` output ([-o] [-D])")
    p.add_argument("--flat", metavar="FLAT.txt", help="`info mtree -f` output ([-o])")
    model_options(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--junit-xml", metavar="PATH", help="also write a JUnit XML report")
    p.add_argument("-v", "--verbose", action="store_true", help="list defaults too")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("render", help="print our `info mtree -f` for a tree",
                       description="Render the tree's FlatViews and print them as QEMU's "
                                   "`info mtree -f` (CR LF like QEMU).")
    p.add_argument("--tree", metavar="TREE.txt", required=True)
    p.add_argument("--flat", metavar="FLAT.txt",
                   help="QEMU's `-f` of the same VM: region attributes the tree does not "
                        "carry may be inferred from it (listed on stderr); ranges never are")
    p.add_argument("--owners", action="store_true", help="print owners like `info mtree -f -o`")
    model_options(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("format", help="re-print a parsed text (byte-identical to QEMU's)")
    p.add_argument("--tree", metavar="TREE.txt")
    p.add_argument("--flat", metavar="FLAT.txt")
    p.set_defaults(func=cmd_format)
