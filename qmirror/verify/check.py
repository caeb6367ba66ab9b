"""The check pipeline, pure: tree text + QEMU's flat text in, verdict out.

1. parse the tree and rebuild the model (:mod:`qmirror.text.tree`);
2. fill what the text does not say: the rule table, then (unless ``strict``)
   inference from QEMU's own ``-f``, else the defaults (:mod:`qmirror.rebuild.gaps`);
3. decide the accelerator (G7) to predict QEMU's `` KVM`` words;
4. render every AddressSpace (:mod:`qmirror.core.render`) and compare
   (:mod:`qmirror.verify.compare`).

The live shell and the CLI call :func:`check` with texts they fetched or read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qmirror.core.model import Fact, Machine, MemoryRegion, RegionKind, Source
from qmirror.core.render import FlatRange, FlatView, render_machine
from qmirror.errors import ParseError
from qmirror.rebuild import gaps
from qmirror.rebuild.rules import Rule
from qmirror.rebuild.tree import build_machine
from qmirror.sim.dispatch import build_dispatch, dump_dispatch, iommu_evidence
from qmirror.sim.kvm import accel_suffix
from qmirror.text import dialect as dialects
from qmirror.text.dialect import Dialect
from qmirror.text.dispatch import DEFAULT_PAGE_BITS, DispatchDump, infer_page_bits, subpage_sizes
from qmirror.text.flat import FlatDocument, document_from_views, parse_flat
from qmirror.text.forgiving import PASTE_LIMIT
from qmirror.text.tree import TreeDocument, forgiving_tree_document, parse_tree_document
from qmirror.verify.compare import Comparison, compare


ACCELS = ("auto", "tcg", "kvm")


@dataclass(frozen=True, slots=True)
class AccelDecision:
    """Which accelerator the FlatViews are predicted for, and how we know."""

    value: str | None  # "kvm", "tcg", or None when unknown
    source: Source
    detail: str


@dataclass(slots=True)
class Loaded:
    """A tree text turned into a model, with the rules applied."""

    document: TreeDocument
    machine: Machine
    rules_applied: list[tuple[MemoryRegion, Rule]]


def load_tree(text: str, *, filename: str | None = None, rules: bool = True,
              dialect: Dialect | None = None, lenient: bool = False) -> Loaded:
    """Parse a tree-mode text and rebuild its model, applying the rule table.

    :param dialect: the QEMU dialect (found from the text when ``None``).
    :param lenient: repair pasting damage first (listed in ``document.repairs``).
    :raise ParseError: the text is not ``info mtree`` tree output.
    """
    doc = parse_tree_document(text, filename=filename, dialect=dialect, lenient=lenient)
    try:
        machine = build_machine(doc)
    except ParseError:
        # A well-formed fragment can still lack what the model needs (the blocks of
        # alias targets): the forgiving reader implies them.
        if not lenient or doc.paste is not None or len(text) > PASTE_LIMIT:
            raise
        doc = forgiving_tree_document(text, filename=filename, dialect=dialect)
        machine = build_machine(doc)
    applied = gaps.apply_rules(machine) if rules else []
    return Loaded(doc, machine, applied)


def decide_accel(machine: Machine, qemu: FlatDocument | None, requested: str = "auto",
                 *, strict: bool = False) -> AccelDecision:
    """G7: the accelerator whose `` KVM`` words we predict.

    ``requested`` other than ``auto`` wins. Otherwise the tree decides where it can
    (text-gaps.md G7); failing that, and unless ``strict``, QEMU's ``-f`` does: any
    accelerator word means KVM, none at all on RAM means not KVM.
    """
    if requested != "auto":
        return AccelDecision(requested, Source.TEXT, "given with --accel")
    from_tree = gaps.infer_accel_from_tree(machine)
    if from_tree is not None:
        why = ("x86 TCG creates cpu-smm-N address spaces" if from_tree == "tcg"
               else "KVM-only regions or address spaces (kvm-*, KVM-SMRAM) in the tree")
        return AccelDecision(from_tree, Source.RULE, why)
    if qemu is not None and not strict:
        words = {w for b in qemu.views for r in b.ranges for w in r.accel}
        if words:
            shown = ", ".join(sorted(words))
            return AccelDecision("kvm", Source.INFERRED,
                                 f"QEMU's -f carries accelerator words ({shown})")
        if any(r.type_word in ("ram", "rom") for b in qemu.views for r in b.ranges):
            return AccelDecision("tcg", Source.INFERRED,
                                 "QEMU's -f shows RAM without accelerator words: not KVM")
    return AccelDecision(None, Source.DEFAULT,
                         "not known: accelerator words are reported, not compared")


def render_document(machine: Machine, views: list[FlatView] | None = None, *,
                    owners: bool = False, accel: str | None = None, dispatch: bool = False,
                    page_bits: int = DEFAULT_PAGE_BITS,
                    dialect: Dialect = dialects.DEFAULT) -> FlatDocument:
    """Our ``info mtree -f`` document for ``machine`` (rendered if ``views`` is None),
    printed the way QEMU of ``dialect`` prints it.

    :param dispatch: with the ``-d`` dispatch dumps, for target pages of ``page_bits``.
    """
    if views is None:
        views = render_machine(machine)
    word = dialect.accel_word
    suffix = None
    if accel == "kvm" and word is not None:
        def suffix(view: FlatView, r: FlatRange) -> tuple[str, ...]:
            return tuple(word for _ in accel_suffix(view, r))
    dispatch_of = None
    if dispatch:
        def dispatch_of(view: FlatView) -> DispatchDump:
            return dump_dispatch(build_dispatch(view, page_bits=page_bits))
    return document_from_views(views, owners=owners, accel_suffix=suffix, dialect=dialect,
                               dispatch_of=dispatch_of)


@dataclass(frozen=True, slots=True)
class PageBitsDecision:
    """The target page size (``TARGET_PAGE_BITS``) our dispatch dumps are built for."""

    value: int
    source: Source
    detail: str


def decide_page_bits(qemu: FlatDocument, requested: int | None = None) -> PageBitsDecision:
    """Given, else read off QEMU's subpage sections, else 12 (x86, aarch64 virt)."""
    if requested is not None:
        return PageBitsDecision(requested, Source.TEXT, "given")
    dumps = [b.dispatch_dump for b in qemu.views if b.dispatch_dump is not None]
    seen = infer_page_bits(dumps)
    if seen is not None:
        sizes = subpage_sizes(dumps)
        total, agree = sum(sizes.values()), sizes[1 << seen]
        share = f"all {total}" if agree == total else f"{agree} of the {total}"
        return PageBitsDecision(seen, Source.INFERRED,
                                f"{share} subpage sections in QEMU's dump cover {1 << seen} "
                                "bytes")
    return PageBitsDecision(DEFAULT_PAGE_BITS, Source.DEFAULT,
                            "no subpage section in QEMU's dump shows the page size; "
                            f"{1 << DEFAULT_PAGE_BITS}-byte pages as on x86 and aarch64 virt "
                            "(give --page-bits otherwise)")


def infer_iommus(views: list[FlatView], qemu: FlatDocument) -> list[Fact]:
    """G1 from QEMU's ``-d``: regions its dump marks `` [iommu]`` are IOMMU regions.

    Rendering does not change (both kinds terminate); the dump's marker does.
    """
    decided: list[Fact] = []
    for view, block in gaps.pair_views(views, qemu):
        if block.dispatch_dump is None:
            continue
        for mr, evidence in iommu_evidence(view, block.dispatch_dump):
            mr.kind = RegionKind.IOMMU
            fact = Fact("G1", "kind", "iommu", Source.INFERRED, evidence)
            mr.set_fact(fact)
            decided.append(fact)
    return decided


def require_dispatch(qemu: FlatDocument) -> None:
    """Refuse to compare dispatch dumps when QEMU's text has none.

    :raise ParseError: at the line where QEMU's first dump should begin.
    """
    for b in qemu.views:
        if b.root is not None and b.ranges and b.dispatch_dump is None:
            raise ParseError("expected the dispatch dump ('  Dispatch') here: comparing "
                             "dispatch needs the output of `info mtree -f -d`",
                             line=b.ranges[-1].lineno + 1, column=1)


@dataclass(slots=True)
class CheckResult:
    """Everything a report needs about one check."""

    loaded: Loaded
    qemu: FlatDocument
    ours: FlatDocument
    comparison: Comparison
    accel: AccelDecision
    inferred: list[Fact] = field(default_factory=list)
    strict: bool = False
    #: The page size the dispatch dumps were built for (``None``: not compared).
    page_bits: PageBitsDecision | None = None

    @property
    def machine(self) -> Machine:
        return self.loaded.machine

    @property
    def ok(self) -> bool:
        return self.comparison.ok


def check(
    tree_text: str,
    flat_text: str,
    *,
    accel: str = "auto",
    strict: bool = False,
    rules: bool = True,
    tree_name: str | None = None,
    flat_name: str | None = None,
    dispatch: bool = False,
    page_bits: int | None = None,
    dialect: Dialect | None = None,
    lenient: bool = False,
) -> CheckResult:
    """Check that our rendering of ``tree_text`` equals QEMU's ``flat_text``.

    :param strict: no inference from the flat text: rules and defaults only.
    :param rules: apply the rule table (off to see what inference alone achieves).
    :param dialect: the QEMU dialect of both texts (``--qemu-version``); else each
        text's own evidence decides.
    :param lenient: repair pasting damage in both texts first.
    :param dispatch: also compare the dispatch dumps (``flat_text`` from ``-f -d``).
    :param page_bits: the target's page bits for the dispatch (default: from QEMU's
        dump where it shows them, else 12).
    :raise ParseError: either text is malformed.
    :raise ModelError: the tree describes a model QEMU could not have (alias loop).
    """
    loaded = load_tree(tree_text, filename=tree_name, rules=rules, dialect=dialect,
                       lenient=lenient)
    qemu = parse_flat(flat_text, filename=flat_name, dialect=dialect, lenient=lenient)
    pages = None
    if dispatch:
        try:
            require_dispatch(qemu)
        except ParseError as err:
            err.filename = flat_name
            raise
        pages = decide_page_bits(qemu, page_bits)
    decision = decide_accel(loaded.machine, qemu, accel, strict=strict)
    if decision.source is not Source.TEXT:
        loaded.machine.set_fact(Fact("G7", "accelerator", decision.value or "unknown",
                                     decision.source, decision.detail))
    loaded.machine.accel = decision.value
    page_bits_used = pages.value if pages else DEFAULT_PAGE_BITS

    def compare_now(inferred: list[Fact]) -> tuple[FlatDocument, Comparison]:
        views = render_machine(loaded.machine, check=False)
        if dispatch and not strict:
            inferred += infer_iommus(views, qemu)
        ours = render_document(loaded.machine, views, owners=qemu.owners,
                               accel=decision.value, dispatch=dispatch,
                               page_bits=page_bits_used, dialect=qemu.dialect)
        return ours, compare(ours, qemu, accel=decision.value is not None, dispatch=dispatch)

    inferred: list[Fact] = []
    ours, result = compare_now(inferred)
    if not strict and not result.ok:
        # Inference exists to settle what the rules and defaults leave wrong: only then
        # is it run (a match needs none, and it costs renders).
        inferred = gaps.infer(loaded.machine, qemu)
        ours, result = compare_now(inferred)
    return CheckResult(loaded, qemu, ours, result, decision, inferred, strict, pages)
