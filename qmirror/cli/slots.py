"""``qmirror slots``: the KVM memory slot table QEMU 7.2 holds for a snapshot (reference §5.6)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from qmirror.cli._common import EXIT_MATCH, EXIT_TROUBLE, read_text, write_stdout
from qmirror.cli._options import TARGET_HELP
from qmirror.errors import InputError


if TYPE_CHECKING:
    from rich.console import Console

    from qmirror.core.model import Machine
    from qmirror.sim.kvm import (
        KvmSlot,
    )


SCHEMA = "qmirror.slots/1"
#: The host page size assumed (:data:`qmirror.sim.kvm.HOST_PAGE_SIZE`, not imported at
#: start-up).
HOST_PAGE_SIZE = 4096


def flag_names(flags: int) -> str:
    """``LOG_DIRTY_PAGES|READONLY``, or ``-`` for none."""
    from qmirror.sim.kvm import KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY

    names = [
        n
        for bit, n in ((KVM_MEM_LOG_DIRTY_PAGES, "LOG_DIRTY_PAGES"), (KVM_MEM_READONLY, "READONLY"))
        if flags & bit
    ]
    return "|".join(names) or "-"


def slots_json(machine: Machine, slots: list[KvmSlot], *, label: str) -> dict[str, Any]:
    """The JSON document: addresses and sizes as ``"0x%016x"``, flags as ``"0x%x"``."""
    from qmirror.core.units import hexs
    from qmirror.sim.kvm import kvm_address_spaces

    return {
        "schema": SCHEMA,
        "source": label,
        "address_spaces": [
            {"as_id": as_id, "name": a.name} for as_id, a in kvm_address_spaces(machine)
        ],
        "slots": [
            {
                "as_id": s.as_id,
                "gpa": hexs(s.gpa),
                "size": hexs(s.size),
                "flags": f"0x{s.flags:x}",
                "flag_names": flag_names(s.flags),
                "region": s.mr.label if s.mr is not None else None,
                "offset_in_region": (
                    hexs(s.offset_in_region) if s.offset_in_region is not None else None
                ),
            }
            for s in slots
        ],
    }


def slots_text(
    machine: Machine, slots: list[KvmSlot], *, label: str, accel: str | None = None
) -> str:
    """One line per slot: ``as_id``, first and last address, size, flags, region.

    :param accel: the VM's accelerator, if known; other than ``kvm`` it is said that
        the table is a prediction of what KVM would be given (a TCG VM has no slots).
    """
    from qmirror.sim.kvm import kvm_address_spaces

    names = ", ".join(f"as_id {as_id} = {a.name!r}" for as_id, a in kvm_address_spaces(machine))
    lines = [f"KVM slots predicted for {label} ({names})"]
    if accel is not None and accel != "kvm":
        lines.append(
            f"{label} runs with {accel}, not KVM: this is the table QEMU would give "
            "KVM for this memory map"
        )
    lines += [f"{'as_id':>5}  {'gpa-last':<33}  {'size':>18}  {'flags':<22}  region"]
    for s in slots:
        region = "" if s.mr is None else f"{s.mr.label} @{s.offset_in_region or 0:016x}"
        flags = f"{s.flags:#x} {flag_names(s.flags)}"
        lines.append(
            f"{s.as_id:>5}  {s.gpa:016x}-{s.end - 1:016x}  {s.size:#18x}  {flags:<22}  {region}"
        )
    lines.append(f"{len(slots)} slot{'s' if len(slots) != 1 else ''}")
    return "\n".join(lines) + "\n"


def cmd_slots(args: argparse.Namespace, out: Console, err: Console) -> int:
    from qmirror.cli._inputs import open_reading
    from qmirror.sim.kvm import KvmConfig, kvm_address_spaces, predict_slots
    from qmirror.verify.reading import read

    if (args.target is None) == (args.tree is None):
        err.print("qmirror slots: give a TARGET or --tree TREE.txt", highlight=False)
        return EXIT_TROUBLE
    if args.flat is not None and args.tree is None:
        err.print("qmirror slots: --flat goes with --tree", highlight=False)
        return EXIT_TROUBLE
    if args.tree is not None:
        flat = read_text(args.flat) if args.flat is not None else None
        reading = read(
            read_text(args.tree),
            flat,
            label=args.tree,
            strict=args.strict,
            rules=not args.no_rules,
            tree_name=args.tree,
            flat_name=args.flat,
        )
    else:
        reading = open_reading(args.target, args)
    machine = reading.machine
    if not kvm_address_spaces(machine):
        raise InputError(
            f"{reading.label}: no address space named 'memory': nothing for KVM to map"
        )
    if args.max_slot_size is not None and args.max_slot_size % args.page_size:
        err.print(
            f"qmirror slots: --max-slot-size must be a multiple of the page size "
            f"({args.page_size})",
            highlight=False,
        )
        return EXIT_TROUBLE
    config = KvmConfig(page_size=args.page_size, max_slot_size=args.max_slot_size)
    slots = sorted(predict_slots(machine, config), key=lambda s: (s.as_id, s.gpa))
    accel = reading.meta.get("accelerator") or reading.accel.value
    if args.format == "json":
        doc = slots_json(machine, slots, label=reading.label)
        doc["vm_accelerator"] = accel
        write_stdout(json.dumps(doc, indent=2) + "\n")
    else:
        write_stdout(slots_text(machine, slots, label=reading.label, accel=accel))
    return EXIT_MATCH


def _power_of_two(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"not a power of two: {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "slots",
        help="the KVM memory slots QEMU holds for a snapshot",
        description="Predict the KVM_SET_USER_MEMORY_REGION slot table of a VM under KVM "
        "from its memory map: one entry per slot (as_id, gpa, size, flags). "
        "Slots follow QEMU 7.2's kvm_set_phys_mem: RAM and ROM devices in ROMD "
        "mode only, aligned inward to the host page, READONLY from the region "
        "itself (not an alias on the way). Slot numbers depend on the VM's "
        "history and are not shown.",
    )
    p.add_argument("target", nargs="?", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("--tree", metavar="TREE.txt", help="`info mtree` output ([-o] [-D])")
    p.add_argument(
        "--flat",
        metavar="FLAT.txt",
        help="QEMU's `info mtree -f` of the same moment: region attributes the "
        "tree does not carry may be inferred from it (not with --strict)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="no inference from QEMU's -f: rule table and defaults only",
    )
    p.add_argument("--no-rules", action="store_true", help="do not apply the rule table")
    p.add_argument(
        "--page-size",
        metavar="BYTES",
        type=_power_of_two,
        default=HOST_PAGE_SIZE,
        help=f"host page size slots are aligned to (default {HOST_PAGE_SIZE})",
    )
    p.add_argument(
        "--max-slot-size",
        metavar="BYTES",
        type=_positive,
        default=None,
        help="split sections into slots of at most BYTES (s390x; default: no limit)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_slots)
