"""``qmirror render|format`` on texts saved from QEMU (``check`` is in :mod:`qmirror.cli.check`)."""

from __future__ import annotations

import argparse

from rich.console import Console

from qmirror.cli._common import EXIT_MATCH, EXIT_TROUBLE, one_stdin, read_text, write_stdout
from qmirror.core.model import Source
from qmirror.core.render import render_machine
from qmirror.errors import QmirrorError
from qmirror.rebuild.gaps import infer
from qmirror.text.dialect import Dialect, for_version
from qmirror.text.dispatch import DEFAULT_PAGE_BITS
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.forgiving import reprint
from qmirror.text.repair import Repair
from qmirror.text.tree import TreeDocument, print_like
from qmirror.verify.check import (
    ACCELS,
    decide_accel,
    decide_page_bits,
    infer_iommus,
    load_tree,
    render_document,
)
from qmirror.views.report import fact_rows


def text_dialect(args: argparse.Namespace) -> Dialect | None:
    """``--qemu-version X.Y`` as a dialect (None: detect from each text)."""
    if args.qemu_version is None:
        return None
    try:
        return for_version(args.qemu_version)
    except ValueError as exc:
        raise QmirrorError(f"--qemu-version: {exc}") from exc


def report_repairs(err: Console, name: str, repairs: list[Repair]) -> None:
    name = "stdin" if name == "-" else name
    for r in repairs:
        err.print(f"{name}:{r.line}: repaired: {r.what}", highlight=False, markup=False)


def report_partial(err: Console, name: str, doc: TreeDocument) -> None:
    """Which FlatViews a partial tree text makes uncertain."""
    names, anywhere = doc.uncertain()
    if not names and not anywhere:
        return
    which = ("every FlatView (an alias target's block is elided or implied)" if anywhere
             else "the FlatViews of " + ", ".join(names))
    err.print(f"{name}: partial: {which} may miss ranges the text does not show",
              highlight=False, markup=False)


def cmd_render(args: argparse.Namespace, out: Console, err: Console) -> int:
    one_stdin(args.tree, args.flat)
    dialect = text_dialect(args)
    loaded = load_tree(read_text(args.tree), filename=args.tree, rules=not args.no_rules,
                       dialect=dialect, lenient=args.lenient)
    report_repairs(err, args.tree, loaded.document.repairs)
    report_partial(err, args.tree, loaded.document)
    qemu = None
    if args.flat:
        qemu = parse_flat(read_text(args.flat), filename=args.flat, dialect=dialect,
                          lenient=args.lenient)
        report_repairs(err, args.flat, qemu.repairs)
    if qemu is not None and not args.strict:
        infer(loaded.machine, qemu)
    decision = decide_accel(loaded.machine, qemu, args.accel, strict=args.strict)
    shown_as = dialect or (qemu.dialect if qemu is not None else loaded.document.dialect)
    if args.print_as is not None:
        try:
            shown_as = for_version(args.print_as)
        except ValueError as exc:
            raise QmirrorError(f"--print-as: {exc}") from exc
    pages = decide_page_bits(qemu, args.page_bits).value if qemu is not None else (
        args.page_bits or DEFAULT_PAGE_BITS)
    views = render_machine(loaded.machine)
    if args.dispatch and qemu is not None and not args.strict:
        infer_iommus(views, qemu)
    doc = render_document(loaded.machine, views, owners=args.owners, accel=decision.value,
                          dialect=shown_as, dispatch=args.dispatch, page_bits=pages)
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
    dialect = text_dialect(args)
    if args.tree is not None:
        loaded = load_tree(read_text(args.tree), filename=args.tree, rules=False,
                           dialect=dialect, lenient=args.lenient)
        report_repairs(err, args.tree, loaded.document.repairs)
        doc = loaded.document
        if doc.paste is not None:
            # A paste is re-printed as read: its elisions stay where they were.
            write_stdout(reprint(doc.paste, doc.eol))
        else:
            write_stdout(print_like(loaded.machine, doc))
    else:
        flat = parse_flat(read_text(args.flat), filename=args.flat, dialect=dialect,
                          lenient=args.lenient)
        report_repairs(err, args.flat, flat.repairs)
        write_stdout(reprint(flat.paste, flat.eol) if flat.paste is not None
                     else print_flat(flat))
    return EXIT_MATCH


def text_options(p: argparse.ArgumentParser, *, lenient: bool) -> None:
    """How input texts are read: their QEMU dialect, and whether to repair pastes."""
    p.add_argument("--qemu-version", metavar="X.Y",
                   help="the QEMU version that printed the texts (default: detected from "
                        "the text)")
    p.add_argument("--lenient", action=argparse.BooleanOptionalAction, default=lenient,
                   help="read pastes forgivingly: repair pasting damage (indentation, prompts, "
                        "quoting, diff prefixes, wrapped lines, NBSP, CR LF), keep elisions "
                        "(...), imply missing headers, and list each repair on stderr; "
                        "intact QEMU output reads exactly as without it; texts over 8 MiB "
                        "are read strictly"
                        + (" (default: on)" if lenient else " (default: off)"))


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
    p = sub.add_parser("render", help="print our `info mtree -f` for a tree",
                       description="Render the tree's FlatViews and print them as QEMU's "
                                   "`info mtree -f` (CR LF like QEMU).")
    p.add_argument("--tree", metavar="TREE.txt", required=True,
                   help="the tree text (`info mtree`), or a paste holding it; - for stdin")
    p.add_argument("--flat", metavar="FLAT.txt",
                   help="QEMU's `-f` of the same VM: region attributes the tree does not "
                        "carry may be inferred from it (listed on stderr); ranges never are")
    p.add_argument("--owners", action="store_true", help="print owners like `info mtree -f -o`")
    p.add_argument("--dispatch", action="store_true",
                   help="add the dispatch dumps like `info mtree -f -d`")
    p.add_argument("--page-bits", type=int, choices=range(10, 17), metavar="N",
                   help="target page bits for --dispatch (default: from --flat's dump, else 12)")
    p.add_argument("--print-as", metavar="X.Y",
                   help="print as QEMU X.Y would (default: as the input's QEMU)")
    model_options(p)
    text_options(p, lenient=True)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("format", help="re-print a parsed text (byte-identical to QEMU's)")
    p.add_argument("--tree", metavar="TREE.txt", help="a tree text or a paste; - for stdin")
    p.add_argument("--flat", metavar="FLAT.txt", help="a flat text or a paste; - for stdin")
    text_options(p, lenient=True)
    p.set_defaults(func=cmd_format)
