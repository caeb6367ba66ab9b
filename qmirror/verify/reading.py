"""One reading of a VM's memory: QEMU's texts, the model rebuilt from them, the rendering.

The views, exports and diffs (``tree``, ``map``, ``ram-map``, ``diff``, the pytest
plugin) all start from the same thing: the tree text of ``info mtree [-o] [-D]``,
usually QEMU's ``info mtree -f [-o]`` of the same moment, and what is known about the
VM (``meta.json`` of a capture, or what a live monitor said). :func:`read` turns those
into a :class:`Reading` through the one pipeline, :func:`qmirror.verify.check.run`:
rebuild the model, fill the gaps (rule table, then inference from QEMU's ``-f`` unless
``strict``), decide the accelerator, render every AddressSpace. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qmirror.core.model import AddressSpace, Fact, Machine, Source
from qmirror.core.render import FlatView, flatview_root, render_machine
from qmirror.errors import ParseError
from qmirror.rebuild.flat import machine_from_flat
from qmirror.text.flat import FlatDocument, parse_flat
from qmirror.text.forgiving import read_paste
from qmirror.text.repair import Repair
from qmirror.verify.check import AccelDecision, Options, run


if TYPE_CHECKING:
    from qmirror.live.snapshot import Snapshot


@dataclass(eq=False, repr=False)
class Reading:
    """A VM's memory state as qmirror sees it.

    :param label: what the user called it (a path, a target, a test's name).
    :param tree_text: QEMU's tree text, as read (CR LF kept).
    :param flat_text: QEMU's ``-f`` text of the same moment, if there is one.
    :param machine: the model rebuilt from ``tree_text``, gaps filled.
    :param views: our rendering of every AddressSpace (views shared as in QEMU).
    :param qemu_flat: ``flat_text`` parsed.
    :param accel: the accelerator decision (G7).
    :param inferred: attributes inferred from ``flat_text``, with their evidence.
    :param meta: what is known about the VM (``meta.json`` keys: ``machine``,
        ``qemu_version``, ``accelerator``, ``command_line``, ...); may be empty.
    :param ramblock_text: QEMU's ``info ramblock`` of the same VM, if it was read
        (gives the exact RAMBlock names for :mod:`qmirror.views.rammap`).
    """

    label: str
    tree_text: str
    flat_text: str | None
    machine: Machine
    views: list[FlatView]
    qemu_flat: FlatDocument | None
    accel: AccelDecision
    inferred: list[Fact] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    ramblock_text: str | None = None
    #: What the forgiving reader repaired in the texts: (file name, repair).
    repairs: list[tuple[str, Repair]] = field(default_factory=list)
    #: The tree text elides lines or lacked some (implied): views may miss ranges.
    partial: bool = False

    def __repr__(self) -> str:
        return (
            f"<Reading {self.label!r}: {len(self.machine.address_spaces)} address spaces, "
            f"{len(self.views)} FlatViews>"
        )

    def view_of(self, a: AddressSpace) -> FlatView:
        """The rendered FlatView that address space ``a`` uses."""
        root = flatview_root(a.root)
        for v in self.views:
            if v.root is root:
                return v
        raise KeyError(a.name)  # pragma: no cover - every AS has a view after render

    @property
    def title(self) -> str:
        """``q35 (pc-q35-7.2, QEMU 7.2.22, tcg)``: the label and what is known of the VM."""
        bits = [str(self.meta[k]) for k in ("machine",) if self.meta.get(k)]
        if self.meta.get("qemu_version"):
            bits.append(f"QEMU {self.meta['qemu_version']}")
        if self.accel.value:
            bits.append(self.accel.value)
        return f"{self.label} ({', '.join(bits)})" if bits else self.label


def read(
    tree_text: str,
    flat_text: str | None = None,
    *,
    label: str = "",
    meta: dict[str, Any] | None = None,
    accel: str = "auto",
    strict: bool = False,
    rules: bool = True,
    tree_name: str | None = None,
    flat_name: str | None = None,
    ramblock_text: str | None = None,
    allow_flat: bool = False,
) -> Reading:
    """Rebuild and render one VM's memory from QEMU's texts.

    :param accel: ``tcg``/``kvm`` to force the accelerator; ``auto`` takes
        ``meta["accelerator"]`` when a live monitor or a capture recorded it, else
        decides as :func:`qmirror.verify.check.decide_accel` does.
    :param strict: no inference from ``flat_text`` (rules and defaults only).
    :param allow_flat: when ``tree_text`` is a paste of ``-f`` output only, build the
        model from it (:mod:`qmirror.rebuild.flat`; a partial reading) instead of
        refusing it.
    :raise ParseError: a text is not ``info mtree`` output (line, column, reason).
    :raise ModelError: the tree describes a model QEMU could not have.
    """
    meta = dict(meta or {})
    recorded = meta.get("accelerator")
    # Pastes are read forgivingly; intact QEMU output reads exactly as before.
    options = Options(
        accel=accel,
        recorded_accel=str(recorded) if recorded else None,
        inference="never" if strict else "always",
        rules=rules,
        compare=False,
        lenient=True,
    )
    try:
        out = run(tree_text, flat_text, options, tree_name=tree_name, flat_name=flat_name)
    except ParseError:
        paste = read_paste(tree_text)
        if (
            not allow_flat
            or flat_text is not None
            or paste.pick("tree") is not None
            or paste.pick("flat") is None
        ):
            raise
        return _from_flat(
            tree_text, label=label, meta=meta, tree_name=tree_name, ramblock_text=ramblock_text
        )
    repairs = [(tree_name or label, r) for r in out.loaded.document.repairs]
    if out.qemu is not None:
        repairs += [(flat_name or label, r) for r in out.qemu.repairs]
    return Reading(
        label,
        tree_text,
        flat_text,
        out.machine,
        out.views,
        out.qemu,
        out.accel,
        out.inferred,
        meta,
        ramblock_text,
        repairs,
        out.loaded.document.partial,
    )


def _from_flat(
    text: str, *, label: str, meta: dict[str, Any], tree_name: str | None, ramblock_text: str | None
) -> Reading:
    """A partial reading of a paste that holds ``info mtree -f`` output only."""
    qemu = parse_flat(text, filename=tree_name, lenient=True)
    machine = machine_from_flat(qemu)
    word = next((w for v in qemu.views for r in v.ranges for w in r.accel), None)
    decision = AccelDecision(
        "kvm" if word else None,
        Source.INFERRED,
        "from the -f text's accelerator words" if word else "unknown",
    )
    machine.accel = decision.value
    name = tree_name or label
    repairs = [(name, r) for r in qemu.repairs]
    repairs.append(
        (
            name,
            Repair(
                1,
                "no tree text: the model is rebuilt from the `info "
                "mtree -f` text alone (one alias per range; the tree's "
                "nesting is unknown)",
            ),
        )
    )
    return Reading(
        label,
        text,
        text,
        machine,
        render_machine(machine),
        qemu,
        decision,
        [],
        meta,
        ramblock_text,
        repairs,
        True,
    )


def snapshot_meta(snap: Snapshot) -> dict[str, Any]:
    """What a reading records about a snapshot's VM: its metadata and extra keys."""
    meta = {**dict(snap.extra), **{k: v for k, v in snap.metadata().items() if v is not None}}
    if snap.command_line and "command_line" not in meta:
        meta["command_line"] = list(snap.command_line)
    return meta


def from_snapshot(
    snap: Snapshot,
    *,
    label: str | None = None,
    accel: str = "auto",
    strict: bool = False,
    rules: bool = True,
    ramblock_text: str | None = None,
) -> Reading:
    """A :class:`Reading` of a :class:`qmirror.live.snapshot.Snapshot` (see :func:`read`).

    :param label: how to call it (default: the capture's ``config`` name, else the
        directory's name or the target it was read from).
    """
    meta = snapshot_meta(snap)
    name = label or str(
        meta.get("config") or snap.label.rstrip("/").rsplit("/", 1)[-1] or snap.label
    )
    return read(
        snap.tree,
        snap.flat,
        label=name,
        meta=meta,
        accel=accel,
        strict=strict,
        rules=rules,
        tree_name=f"{snap.label}: info mtree -o -D",
        flat_name=f"{snap.label}: info mtree -f -o",
        ramblock_text=ramblock_text,
    )
