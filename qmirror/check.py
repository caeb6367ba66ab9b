"""The check pipeline, pure: tree text + QEMU's flat text in, verdict out.

1. parse the tree and rebuild the model (:mod:`qmirror.treetext`);
2. fill what the text does not say: the rule table, then (unless ``strict``)
   inference from QEMU's own ``-f``, else the defaults (:mod:`qmirror.gaps`);
3. decide the accelerator (G7) to predict QEMU's `` KVM`` words;
4. render every AddressSpace (:mod:`qmirror.render`) and compare (:mod:`qmirror.compare`).

The live shell and the CLI call :func:`check` with texts they fetched or read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qmirror import gaps
from qmirror.compare import Comparison, compare
from qmirror.flattext import FlatDocument, document_from_views, parse_flat
from qmirror.kvm import accel_suffix
from qmirror.model import Fact, Machine, MemoryRegion, Source
from qmirror.render import FlatView, render_machine
from qmirror.rules import Rule
from qmirror.treetext import TreeDocument, build_machine, parse_tree_document


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


def load_tree(text: str, *, filename: str | None = None, rules: bool = True) -> Loaded:
    """Parse a tree-mode text and rebuild its model, applying the rule table.

    :raise ParseError: the text is not ``info mtree`` tree output.
    """
    doc = parse_tree_document(text, filename=filename)
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
                    owners: bool = False, accel: str | None = None) -> FlatDocument:
    """Our ``info mtree -f`` document for ``machine`` (rendered if ``views`` is None)."""
    if views is None:
        views = render_machine(machine)
    return document_from_views(views, owners=owners,
                               accel_suffix=accel_suffix if accel == "kvm" else None)


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
) -> CheckResult:
    """Check that our rendering of ``tree_text`` equals QEMU's ``flat_text``.

    :param strict: no inference from the flat text: rules and defaults only.
    :param rules: apply the rule table (off to see what inference alone achieves).
    :raise ParseError: either text is malformed.
    :raise ModelError: the tree describes a model QEMU could not have (alias loop).
    """
    loaded = load_tree(tree_text, filename=tree_name, rules=rules)
    qemu = parse_flat(flat_text, filename=flat_name)
    inferred = [] if strict else gaps.infer(loaded.machine, qemu)
    decision = decide_accel(loaded.machine, qemu, accel, strict=strict)
    if decision.source is not Source.TEXT:
        loaded.machine.set_fact(Fact("G7", "accelerator", decision.value or "unknown",
                                     decision.source, decision.detail))
    loaded.machine.accel = decision.value
    ours = render_document(loaded.machine, owners=qemu.owners, accel=decision.value)
    result = compare(ours, qemu, accel=decision.value is not None)
    return CheckResult(loaded, qemu, ours, result, decision, inferred, strict)
