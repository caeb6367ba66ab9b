"""The pipeline, pure: tree text (+ QEMU's flat text) in, model, FlatViews and verdict out.

1. parse the tree and rebuild the model (:mod:`qmirror.text.tree`,
   :mod:`qmirror.rebuild.tree`);
2. fill what the text does not say: the rule table, then the facts harvested from
   the same QEMU version (:mod:`qmirror.rebuild.harvest`), then (as
   :attr:`Options.inference` says) inference from QEMU's own ``-f``, else the defaults
   (:mod:`qmirror.rebuild.gaps`);
3. decide the accelerator (G7) to predict QEMU's `` KVM`` words;
4. render every AddressSpace (:mod:`qmirror.core.render`) and, when asked, compare
   with QEMU's ``-f`` (:mod:`qmirror.verify.compare`).

Everything that turns text into a model goes through it: :func:`check` (offline
``check``, live checks, snapshots), :func:`qmirror.verify.reading.read` (readings,
views, ``expect``), ``qmirror render`` and the live mirror.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from qmirror.core.bulk import gc_paused
from qmirror.core.model import Fact, Machine, MemoryRegion, RegionKind, Source
from qmirror.core.render import FlatRange, FlatView, render_machine
from qmirror.errors import ModelError, ParseError
from qmirror.rebuild import gaps, harvest
from qmirror.rebuild.harvest import HarvestedFact, HarvestTable
from qmirror.rebuild.identity import split_own_roots
from qmirror.rebuild.rules import Rule
from qmirror.rebuild.tree import build_machine
from qmirror.sim.dispatch import build_dispatch, dump_dispatch, iommu_evidence
from qmirror.text import dialect as dialects
from qmirror.text.dialect import Dialect
from qmirror.text.dispatch import DEFAULT_PAGE_BITS, DispatchDump, infer_page_bits, subpage_sizes
from qmirror.text.flat import FlatDocument, document_from_views, parse_flat
from qmirror.text.forgiving import PASTE_LIMIT
from qmirror.text.tree import TreeDocument, forgiving_tree_document, parse_tree_document
from qmirror.verify.compare import Comparison, compare


ACCELS = ("auto", "tcg", "kvm")

#: When inference from QEMU's ``-f`` runs: only to settle a mismatch (``check``), on
#: every reading (views, readings), or never (``--strict``).
Inference = Literal["on-mismatch", "always", "never"]


@dataclass(frozen=True, slots=True)
class AccelDecision:
    """Which accelerator the FlatViews are predicted for, and how we know."""

    value: str | None  # "kvm", "tcg", or None when unknown
    source: Source
    detail: str


@dataclass(slots=True)
class Loaded:
    """A tree text turned into a model, with the rules applied."""

    #: The text's document; its blocks and lines are let go once the model is built,
    #: except for a paste's (:attr:`TreeDocument.paste`).
    document: TreeDocument
    machine: Machine
    #: The rules applied, in order (:mod:`qmirror.rebuild.rules`).
    rules_applied: list[tuple[MemoryRegion, Rule]] = field(default_factory=list)
    #: The harvested facts used (:mod:`qmirror.rebuild.harvest`), and their table.
    harvested: list[tuple[MemoryRegion, HarvestedFact]] = field(default_factory=list)
    harvest_table: HarvestTable | None = None


def harvest_table_for(doc: TreeDocument, qemu_version: str | None) -> HarvestTable | None:
    """The harvested table for a text: its QEMU version's own, else the nearest one;
    without a version, the one nearest the text's dialect."""
    return harvest.table_for(qemu_version if qemu_version is not None else doc.dialect.since[:2])


def load_tree(
    text: str,
    *,
    filename: str | None = None,
    rules: bool = True,
    dialect: Dialect | None = None,
    lenient: bool = False,
    harvested: bool | HarvestTable = True,
    qemu_version: str | None = None,
) -> Loaded:
    """Parse a tree-mode text and rebuild its model, applying the rule table, then the
    facts harvested from the same QEMU version (both only with ``rules``).

    :param dialect: the QEMU dialect (found from the text when ``None``).
    :param lenient: repair pasting damage first (listed in ``document.repairs``).
    :param harvested: apply harvested facts (``False``: the hand-written rules alone);
        a table to use that one instead of the shipped one.
    :param qemu_version: ``X.Y`` of the QEMU that printed the text, when known; picks
        the harvested table.
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
    if doc.paste is None:
        # The model has what the lines said: holding them beside it doubled a check's
        # memory (issue 13). A paste keeps them, to say where it is partial.
        doc.blocks = []
        doc.lines = []
    applied = gaps.apply_rules(machine) if rules else []
    if rules and not doc.dialect.grouped:
        # Before 7.0 identical-looking roots read as one: where the source says each
        # address space has its own, it gets its own (G5).
        split_own_roots(machine)
    table = None
    if rules and harvested is not False:
        table = (
            harvested
            if isinstance(harvested, HarvestTable)
            else harvest_table_for(doc, qemu_version)
        )
    used = harvest.apply_harvest(machine, table) if table is not None else []
    return Loaded(doc, machine, applied, used, table)


def decide_accel(
    machine: Machine,
    qemu: FlatDocument | None,
    requested: str = "auto",
    *,
    strict: bool = False,
    recorded: str | None = None,
) -> AccelDecision:
    """G7: the accelerator whose `` KVM`` words we predict.

    ``requested`` other than ``auto`` wins, then the accelerator ``recorded`` with the
    reading (a live monitor or a capture's ``meta.json``). Otherwise the tree decides
    where it can (docs/text-gaps.md G7); failing that, and unless ``strict``, QEMU's
    ``-f`` does: any accelerator word means KVM, none at all on RAM means not KVM.
    """
    if requested != "auto":
        return AccelDecision(requested, Source.TEXT, "given with --accel")
    if recorded in ("kvm", "tcg"):
        return AccelDecision(recorded, Source.TEXT, "recorded with the reading")
    from_tree = gaps.infer_accel_from_tree(machine)
    if from_tree is not None:
        why = (
            "x86 TCG creates cpu-smm-N address spaces"
            if from_tree == "tcg"
            else "KVM-only regions or address spaces (kvm-*, KVM-SMRAM) in the tree"
        )
        return AccelDecision(from_tree, Source.RULE, why)
    if qemu is not None and not strict:
        words = {w for b in qemu.views for r in b.ranges for w in r.accel}
        if words:
            shown = ", ".join(sorted(words))
            return AccelDecision(
                "kvm", Source.INFERRED, f"QEMU's -f carries accelerator words ({shown})"
            )
        if any(r.type_word in ("ram", "rom") for b in qemu.views for r in b.ranges):
            return AccelDecision(
                "tcg", Source.INFERRED, "QEMU's -f shows RAM without accelerator words: not KVM"
            )
    return AccelDecision(
        None, Source.DEFAULT, "not known: accelerator words are reported, not compared"
    )


def render_document(
    machine: Machine,
    views: list[FlatView] | None = None,
    *,
    owners: bool = False,
    accel: str | None = None,
    dispatch: bool = False,
    page_bits: int = DEFAULT_PAGE_BITS,
    dialect: Dialect = dialects.DEFAULT,
) -> FlatDocument:
    """Our ``info mtree -f`` document for ``machine`` (rendered if ``views`` is None),
    printed the way QEMU of ``dialect`` prints it.

    :param dispatch: with the ``-d`` dispatch dumps, for target pages of ``page_bits``.
    """
    if views is None:
        views = render_machine(machine)
    word = dialect.accel_word
    suffix = None
    if accel == "kvm" and word is not None:
        # Here: the KVM slot model is a big import that only KVM predictions need.
        from qmirror.sim.kvm import accel_suffix

        def suffix(view: FlatView, r: FlatRange) -> tuple[str, ...]:
            return tuple(word for _ in accel_suffix(view, r))

    dispatch_of = None
    if dispatch:

        def dispatch_of(view: FlatView) -> DispatchDump:
            return dump_dispatch(
                build_dispatch(view, page_bits=page_bits), region_ends=dialect.dispatch_region_ends
            )

    return document_from_views(
        views, owners=owners, accel_suffix=suffix, dialect=dialect, dispatch_of=dispatch_of
    )


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
        return PageBitsDecision(
            seen,
            Source.INFERRED,
            f"{share} subpage sections in QEMU's dump cover {1 << seen} bytes",
        )
    return PageBitsDecision(
        DEFAULT_PAGE_BITS,
        Source.DEFAULT,
        "no subpage section in QEMU's dump shows the page size; "
        f"{1 << DEFAULT_PAGE_BITS}-byte pages as on x86 and aarch64 virt "
        "(give --page-bits otherwise)",
    )


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


def require_dispatch(qemu: FlatDocument, filename: str | None = None) -> None:
    """Refuse to compare dispatch dumps when QEMU's text has none.

    :raise ParseError: at the line where QEMU's first dump should begin (in ``filename``).
    """
    for b in qemu.views:
        if b.root is not None and b.ranges and b.dispatch_dump is None:
            raise ParseError(
                "expected the dispatch dump ('  Dispatch') here: comparing "
                "dispatch needs the output of `info mtree -f -d`",
                line=b.ranges[-1].lineno + 1,
                column=1,
                filename=filename,
            )


@dataclass(frozen=True, slots=True)
class Options:
    """How :func:`run` completes, renders and compares a model.

    :param accel: ``auto``, ``tcg`` or ``kvm`` (see :func:`decide_accel`).
    :param recorded_accel: the accelerator recorded with the reading, taken when
        ``accel`` is ``auto``.
    :param inference: when to infer from QEMU's ``-f`` (:data:`Inference`);
        ``on-mismatch`` infers nothing when nothing is compared.
    :param rules: apply the rule table (off to see what inference alone achieves).
    :param dialect: the QEMU dialect of both texts; else each text's evidence decides.
    :param lenient: repair pasting damage in both texts first.
    :param dispatch: build the dispatch dumps (and compare them with QEMU's ``-d``).
    :param page_bits: the target's page bits for the dispatch (default: from QEMU's
        dump where it shows them, else 12).
    :param compare: compare with QEMU's ``-f`` when there is one.
    :param harvested: apply the facts harvested from QEMU (``False``: the hand-written
        rules alone); a table to use that one instead of the shipped one.
    :param qemu_version: ``X.Y`` of the QEMU that printed the texts, when known; picks
        the harvested table.
    """

    accel: str = "auto"
    recorded_accel: str | None = None
    inference: Inference = "on-mismatch"
    rules: bool = True
    dialect: Dialect | None = None
    lenient: bool = False
    dispatch: bool = False
    page_bits: int | None = None
    compare: bool = True
    harvested: bool | HarvestTable = True
    qemu_version: str | None = None

    @property
    def strict(self) -> bool:
        return self.inference == "never"


@dataclass(slots=True)
class Outcome:
    """What :func:`run` made of the texts.

    :param qemu: QEMU's ``-f`` parsed (``None`` without a flat text).
    :param views: our FlatViews of the completed model (after any inference).
    :param ours: our ``-f`` document, printed as QEMU's dialect (when compared).
    :param comparison: against QEMU's ``-f`` (``None`` when not compared).
    :param page_bits: the page size the dispatch dumps were built for.
    """

    loaded: Loaded
    qemu: FlatDocument | None
    views: list[FlatView]
    accel: AccelDecision
    options: Options
    inferred: list[Fact] = field(default_factory=list)
    page_bits: PageBitsDecision | None = None
    ours: FlatDocument | None = None
    comparison: Comparison | None = None

    @property
    def machine(self) -> Machine:
        return self.loaded.machine


def run(
    tree_text: str,
    flat_text: str | None,
    options: Options = Options(),
    *,
    tree_name: str | None = None,
    flat_name: str | None = None,
) -> Outcome:
    """Text -> model -> rules and inference -> render (-> compare): the one pipeline.

    :raise ParseError: either text is malformed (or, comparing dispatch, QEMU's text
        has no dispatch dump).
    :raise ModelError: the tree describes a model QEMU could not have (alias loop).
    """
    o = options
    loaded = load_tree(
        tree_text,
        filename=tree_name,
        rules=o.rules,
        dialect=o.dialect,
        lenient=o.lenient,
        harvested=o.harvested,
        qemu_version=o.qemu_version,
    )
    machine = loaded.machine
    qemu = None
    if flat_text is not None:
        qemu = parse_flat(flat_text, filename=flat_name, dialect=o.dialect, lenient=o.lenient)
    comparing = o.compare and qemu is not None
    pages = None
    if o.dispatch:
        if qemu is None:
            pages = (
                PageBitsDecision(o.page_bits, Source.TEXT, "given")
                if o.page_bits
                else PageBitsDecision(DEFAULT_PAGE_BITS, Source.DEFAULT, "no dump to read")
            )
        else:
            if comparing:
                require_dispatch(qemu, flat_name)
            pages = decide_page_bits(qemu, o.page_bits)
    inferred: list[Fact] = []
    if not o.strict and qemu is not None and not loaded.document.dialect.grouped:
        # Before 7.0 every address space printed its own tree: which identical-looking
        # roots are one region only QEMU's -f tells.
        inferred += gaps.split_shared_roots(machine, qemu)
    if o.inference == "always" and qemu is not None:
        inferred += gaps.infer(machine, qemu)
    decision = decide_accel(machine, qemu, o.accel, strict=o.strict, recorded=o.recorded_accel)
    if decision.source is not Source.TEXT:
        machine.set_fact(
            Fact("G7", "accelerator", decision.value or "unknown", decision.source, decision.detail)
        )
    machine.accel = decision.value
    page_bits = pages.value if pages else DEFAULT_PAGE_BITS

    def render_now() -> Outcome:
        views = render_machine(machine, check=False)
        if o.dispatch and qemu is not None and not o.strict:
            inferred.extend(infer_iommus(views, qemu))
        out = Outcome(loaded, qemu, views, decision, o, inferred, pages)
        if comparing:
            assert qemu is not None
            out.ours = render_document(
                machine,
                views,
                owners=qemu.owners,
                accel=decision.value,
                dispatch=o.dispatch,
                page_bits=page_bits,
                dialect=qemu.dialect,
            )
            out.comparison = compare(
                out.ours, qemu, accel=decision.value is not None, dispatch=o.dispatch
            )
        return out

    try:
        out = render_now()
    except ModelError:
        # An alias cycle through windows printed X-X (G4): closing them is the one
        # reading under which QEMU's own walk ended; -f still judges it.
        closed = [] if o.strict or qemu is None else gaps.close_cyclic_windows(machine)
        if not closed:
            raise
        inferred += closed
        out = render_now()
    if o.inference == "on-mismatch" and out.comparison is not None and not out.comparison.ok:
        # Inference exists to settle what the rules and defaults leave wrong: only then
        # is it run (a match needs none, and it costs renders).
        assert qemu is not None
        inferred = gaps.infer(machine, qemu, views=out.views)
        out = render_now()
    return out


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
    #: Our FlatViews of the completed model (the ones compared).
    views: list[FlatView] = field(default_factory=list)

    @classmethod
    def of(cls, out: Outcome) -> CheckResult:
        """The verdict of a :func:`run` that compared."""
        assert out.qemu is not None and out.ours is not None and out.comparison is not None
        return cls(
            out.loaded,
            out.qemu,
            out.ours,
            out.comparison,
            out.accel,
            out.inferred,
            out.options.strict,
            out.page_bits,
            out.views,
        )

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
    harvested: bool | HarvestTable = True,
    qemu_version: str | None = None,
) -> CheckResult:
    """Check that our rendering of ``tree_text`` equals QEMU's ``flat_text``.

    :param strict: no inference from the flat text: rules and defaults only.
    :param rules: apply the rule table and the harvested facts (off to see what
        inference alone achieves).
    :param harvested: apply harvested facts (see :func:`load_tree`).
    :param qemu_version: ``X.Y`` of the QEMU that printed the texts, when known.
    :param dialect: the QEMU dialect of both texts (``--qemu-version``); else each
        text's own evidence decides.
    :param lenient: repair pasting damage in both texts first.
    :param dispatch: also compare the dispatch dumps (``flat_text`` from ``-f -d``).
    :param page_bits: the target's page bits for the dispatch (default: from QEMU's
        dump where it shows them, else 12).
    :raise ParseError: either text is malformed.
    :raise ModelError: the tree describes a model QEMU could not have (alias loop).
    """
    options = Options(
        accel=accel,
        inference="never" if strict else "on-mismatch",
        rules=rules,
        dialect=dialect,
        lenient=lenient,
        dispatch=dispatch,
        page_bits=page_bits,
        harvested=harvested,
        qemu_version=qemu_version,
    )
    # Every step makes objects by the hundred thousand and none leaves a cycle to
    # collect: the collector scanning them again and again cost up to 4x (issue 13).
    with gc_paused():
        return CheckResult.of(
            run(tree_text, flat_text, options, tree_name=tree_name, flat_name=flat_name)
        )
