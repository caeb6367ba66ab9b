"""The ``qmirror`` command line.

Exit codes follow diff(1): 0 when every compared FlatView matches, 1 on any
mismatch, 2 on trouble (unreadable file, parse error, usage, a failing QEMU).
Results go to stdout; diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from qmirror import __version__
from qmirror.check import ACCELS, check, decide_accel, load_tree, render_document
from qmirror.errors import QmirrorError
from qmirror.flattext import parse_flat, print_flat
from qmirror.gaps import infer
from qmirror.model import Source
from qmirror.report import fact_rows, junit_error, print_text, to_json, write_junit
from qmirror.treetext import parse_tree_document, print_tree


EXIT_MATCH, EXIT_MISMATCH, EXIT_TROUBLE = 0, 1, 2


def _consoles(color: str) -> tuple[Console, Console]:
    force = {"always": True, "never": False}.get(color)
    no_color = color == "never" or None
    out = Console(force_terminal=force, no_color=no_color, soft_wrap=True)
    err = Console(stderr=True, force_terminal=force, no_color=no_color, soft_wrap=True)
    return out, err


def _read(path: str) -> str:
    """Read a text file as is (CR LF kept: QEMU's monitor output has it)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except OSError as err:
        raise QmirrorError(f"cannot read {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise QmirrorError(f"{path} is not UTF-8 text (byte {err.start})") from err


def _write_stdout(text: str) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode())
    sys.stdout.buffer.flush()


def cmd_check(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.tree is None or args.flat is None:
        err.print("qmirror check: give --tree TREE.txt and --flat FLAT.txt", highlight=False)
        return EXIT_TROUBLE
    result = check(_read(args.tree), _read(args.flat), accel=args.accel, strict=args.strict,
                   rules=not args.no_rules, tree_name=args.tree, flat_name=args.flat)
    if args.junit_xml:
        write_junit(result, Path(args.junit_xml))
    if args.format == "json":
        doc = to_json(result, inputs={"tree": args.tree, "flat": args.flat})
        _write_stdout(json.dumps(doc, indent=2) + "\n")
    else:
        print_text(result, out, verbose=args.verbose)
    return EXIT_MATCH if result.ok else EXIT_MISMATCH


def cmd_render(args: argparse.Namespace, out: Console, err: Console) -> int:
    loaded = load_tree(_read(args.tree), filename=args.tree, rules=not args.no_rules)
    qemu = parse_flat(_read(args.flat), filename=args.flat) if args.flat else None
    if qemu is not None and not args.strict:
        infer(loaded.machine, qemu)
    decision = decide_accel(loaded.machine, qemu, args.accel, strict=args.strict)
    doc = render_document(loaded.machine, owners=args.owners, accel=decision.value)
    doc.eol = loaded.document.eol
    _write_stdout(print_flat(doc))
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
        doc = parse_tree_document(_read(args.tree), filename=args.tree)
        machine = load_tree(_read(args.tree), filename=args.tree, rules=False).machine
        _write_stdout(print_tree(machine, owners=doc.owners, disabled=doc.shows_disabled,
                                 eol=doc.eol))
    else:
        _write_stdout(print_flat(parse_flat(_read(args.flat), filename=args.flat)))
    return EXIT_MATCH


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmirror",
        description="See, mirror and check QEMU's memory map: rebuild the MemoryRegion tree "
                    "from `info mtree`, render its FlatViews as QEMU does, compare.")
    parser.add_argument("--version", action="version", version=f"qmirror {__version__}")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour in terminal output (default: auto; NO_COLOR is honoured)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="compare our FlatViews with QEMU's `info mtree -f`",
                       description="Render the tree and compare with QEMU's flat output. "
                                   "Exit 0: match, 1: mismatch, 2: trouble.")
    p.add_argument("--tree", metavar="TREE.txt", help="`info mtree` output ([-o] [-D])")
    p.add_argument("--flat", metavar="FLAT.txt", help="`info mtree -f` output ([-o])")
    _common_model_options(p)
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
    _common_model_options(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("format", help="re-print a parsed text (byte-identical to QEMU's)")
    p.add_argument("--tree", metavar="TREE.txt")
    p.add_argument("--flat", metavar="FLAT.txt")
    p.set_defaults(func=cmd_format)
    return parser


def _common_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accel", choices=ACCELS, default="auto",
                   help="accelerator to predict `KVM` words for (default auto: from the tree "
                        "where it can tell, else from QEMU's -f unless --strict)")
    p.add_argument("--strict", action="store_true",
                   help="no inference from QEMU's -f: rule table and defaults only")
    p.add_argument("--no-rules", action="store_true",
                   help="do not apply the rule table (to see what inference alone does)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out, err = _consoles(args.color)
    try:
        code: int = args.func(args, out, err)
        return code
    except QmirrorError as exc:
        err.print(f"qmirror {args.command}: {exc}", highlight=False, markup=False)
        junit = getattr(args, "junit_xml", None)
        if junit:
            junit_error(Path(junit), str(exc))
        return EXIT_TROUBLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
