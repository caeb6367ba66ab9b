"""``qmirror render|format`` on texts saved from QEMU (``check`` is in :mod:`qmirror.cli.check`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from qmirror.cli._common import EXIT_MATCH, EXIT_TROUBLE, one_stdin, read_text, write_stdout
from qmirror.cli._options import model_options, text_options
from qmirror.errors import InputError


if TYPE_CHECKING:
    from rich.console import Console

    from qmirror.text.dialect import Dialect
    from qmirror.text.repair import Repair
    from qmirror.text.tree import TreeDocument


def text_dialect(args: argparse.Namespace) -> Dialect | None:
    """``--qemu-version X.Y`` as a dialect (None: detect from each text)."""
    from qmirror.text.dialect import for_version

    if args.qemu_version is None:
        return None
    try:
        return for_version(args.qemu_version)
    except InputError as exc:
        raise InputError(f"--qemu-version: {exc}") from exc


def report_repairs(err: Console, name: str, repairs: list[Repair]) -> None:
    name = "stdin" if name == "-" else name
    for r in repairs:
        err.print(f"{name}:{r.line}: repaired: {r.what}", highlight=False, markup=False)


def report_partial(err: Console, name: str, doc: TreeDocument) -> None:
    """Which FlatViews a partial tree text makes uncertain."""
    names, anywhere = doc.uncertain()
    if not names and not anywhere:
        return
    which = (
        "every FlatView (an alias target's block is elided or implied)"
        if anywhere
        else "the FlatViews of " + ", ".join(names)
    )
    err.print(
        f"{name}: partial: {which} may miss ranges the text does not show",
        highlight=False,
        markup=False,
    )


def cmd_render(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.core.model import Source
    from qmirror.text.dialect import for_version
    from qmirror.text.dispatch import DEFAULT_PAGE_BITS
    from qmirror.text.flat import print_flat
    from qmirror.verify.check import Options, render_document, run
    from qmirror.views.report import fact_rows

    one_stdin(args.tree, args.flat)
    dialect = text_dialect(args)
    options = Options(
        accel=args.accel,
        inference="never" if args.strict else "always",
        rules=not args.no_rules,
        dialect=dialect,
        lenient=args.lenient,
        dispatch=args.dispatch,
        page_bits=args.page_bits,
        compare=False,
        qemu_version=args.qemu_version,
    )
    result = run(
        read_text(args.tree),
        read_text(args.flat) if args.flat else None,
        options,
        tree_name=args.tree,
        flat_name=args.flat,
    )
    loaded, qemu, decision = result.loaded, result.qemu, result.accel
    report_repairs(err, args.tree, loaded.document.repairs)
    report_partial(err, args.tree, loaded.document)
    if qemu is not None:
        report_repairs(err, args.flat, qemu.repairs)
    shown_as = dialect or (qemu.dialect if qemu is not None else loaded.document.dialect)
    if args.print_as is not None:
        try:
            shown_as = for_version(args.print_as)
        except InputError as exc:
            raise InputError(f"--print-as: {exc}") from exc
    pages = result.page_bits.value if result.page_bits is not None else DEFAULT_PAGE_BITS
    doc = render_document(
        loaded.machine,
        result.views,
        owners=args.owners,
        accel=decision.value,
        dialect=shown_as,
        dispatch=args.dispatch,
        page_bits=pages,
    )
    doc.eol = loaded.document.eol
    write_stdout(print_flat(doc))
    reported = [
        (p, f)
        for p, f in fact_rows(loaded.machine)
        if f.source in (Source.HARVESTED, Source.INFERRED)
    ]
    for path, f in reported:
        err.print(
            f"{f.source.value} {f.gap} {path}: {f.attribute} = {f.value} ({f.detail})",
            highlight=False,
            markup=False,
        )
    if decision.value is None:
        err.print(
            "accelerator unknown: no accelerator words predicted (use --accel)", highlight=False
        )
    return EXIT_MATCH


def cmd_format(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.text.flat import parse_flat, print_flat
    from qmirror.text.forgiving import reprint
    from qmirror.text.tree import print_like
    from qmirror.verify.check import load_tree

    one_stdin(args.tree, args.flat)
    if (args.tree is None) == (args.flat is None):
        err.print("qmirror format: give exactly one of --tree or --flat", highlight=False)
        return EXIT_TROUBLE
    dialect = text_dialect(args)
    if args.tree is not None:
        loaded = load_tree(
            read_text(args.tree),
            filename=args.tree,
            rules=False,
            dialect=dialect,
            lenient=args.lenient,
        )
        report_repairs(err, args.tree, loaded.document.repairs)
        doc = loaded.document
        if doc.paste is not None:
            # A paste is re-printed as read: its elisions stay where they were.
            write_stdout(reprint(doc.paste, doc.eol))
        else:
            write_stdout(print_like(loaded.machine, doc))
    else:
        flat = parse_flat(
            read_text(args.flat), filename=args.flat, dialect=dialect, lenient=args.lenient
        )
        report_repairs(err, args.flat, flat.repairs)
        write_stdout(reprint(flat.paste, flat.eol) if flat.paste is not None else print_flat(flat))
    return EXIT_MATCH


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "render",
        help="print our `info mtree -f` for a tree",
        description="Render the tree's FlatViews and print them as QEMU's "
        "`info mtree -f` (CR LF like QEMU).",
    )
    p.add_argument(
        "--tree",
        metavar="TREE.txt",
        required=True,
        help="the tree text (`info mtree`), or a paste holding it; - for stdin",
    )
    p.add_argument(
        "--flat",
        metavar="FLAT.txt",
        help="QEMU's `-f` of the same VM: region attributes the tree does not "
        "carry may be inferred from it (listed on stderr); ranges never are",
    )
    p.add_argument("--owners", action="store_true", help="print owners like `info mtree -f -o`")
    p.add_argument(
        "--dispatch", action="store_true", help="add the dispatch dumps like `info mtree -f -d`"
    )
    p.add_argument(
        "--page-bits",
        type=int,
        choices=range(10, 17),
        metavar="N",
        help="target page bits for --dispatch (default: from --flat's dump, else 12)",
    )
    p.add_argument(
        "--print-as", metavar="X.Y", help="print as QEMU X.Y would (default: as the input's QEMU)"
    )
    model_options(p)
    text_options(p, lenient=True)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("format", help="re-print a parsed text (byte-identical to QEMU's)")
    p.add_argument("--tree", metavar="TREE.txt", help="a tree text or a paste; - for stdin")
    p.add_argument("--flat", metavar="FLAT.txt", help="a flat text or a paste; - for stdin")
    text_options(p, lenient=True)
    p.set_defaults(func=cmd_format)
