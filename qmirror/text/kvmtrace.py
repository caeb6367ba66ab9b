"""QEMU's own record of its KVM memory slot and ioeventfd calls: its trace log.

Run QEMU with ``-trace kvm_set_user_memory -trace kvm_set_ioeventfd_mmio
-trace kvm_set_ioeventfd_pio -D LOG`` (Debian's build uses the ``log`` trace
backend: one line per event in the ``-D`` file, prefixed ``PID@SECONDS:`` only with
``-msg timestamp=on``). QEMU 7.2 writes (accel/kvm/trace-events)::

    kvm_set_user_memory Slot#%d flags=0x%x gpa=0x%lx size=0x%lx ua=0x%lx ret=%d
    kvm_set_ioeventfd_mmio fd: %d @0x%lx val=0x%x assign: %d size: %d match: %d
    kvm_set_ioeventfd_pio fd: %d @0x%x val=0x%x assign: %d size: %d match: %d

where ``Slot#`` is the ioctl's slot field, ``slot | as_id << 16``. Later QEMUs print
``AddrSpace#%d Slot#%d`` instead, and QEMU 9.0+ (seen in 10.0 and 11.1) adds
``guest_memfd=%d guest_memfd_offset=0x%lx`` before ``ret``; all are read. Other lines
are skipped.
:func:`final_slots` replays the slot calls into the table they leave behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qmirror.errors import ParseError


__all__ = [
    "TracedIoeventfd",
    "TracedSlotCall",
    "parse_trace",
]

_PREFIX = r"(?:\d+@\d+\.\d+:)?"
_EVENT = re.compile(
    _PREFIX + r"(kvm_set_user_memory|kvm_set_ioeventfd_mmio|"
    r"kvm_set_ioeventfd_pio) "
)
#: Each format as a sequence of fields, so a bad line can say where it stops matching.
_SLOT = [
    re.compile(p)
    for p in (
        r"(?:AddrSpace#(?P<as>\d+) )?",
        r"Slot#(?P<slot>\d+)",
        r" flags=0x(?P<flags>[0-9a-f]+)",
        r" gpa=0x(?P<gpa>[0-9a-f]+)",
        r" size=0x(?P<size>[0-9a-f]+)",
        r" ua=0x(?P<ua>[0-9a-f]+)",
        r"(?: guest_memfd=-?\d+ guest_memfd_offset=0x[0-9a-f]+)?",
        r" ret=(?P<ret>-?\d+)",
        r"\s*\Z",
    )
]
_IOEVENTFD = [
    re.compile(p)
    for p in (
        r"fd: (?P<fd>-?\d+)",
        r" @0x(?P<addr>[0-9a-f]+)",
        r" val=0x(?P<val>[0-9a-f]+)",
        r" assign: (?P<assign>[01])",
        r" size: (?P<size>\d+)",
        r" match: (?P<match>[01])",
        r"\s*\Z",
    )
]


def _match_fields(fields: list[re.Pattern[str]], text: str) -> tuple[dict[str, str], int]:
    """Match ``fields`` one after the other: the captured values, or where it failed.

    :return: ``(values, -1)`` on success, ``({}, column)`` (0-based) on failure.
    """
    values: dict[str, str] = {}
    pos = 0
    for f in fields:
        m = f.match(text, pos)
        if m is None:
            return {}, pos
        values.update({k: v for k, v in m.groupdict().items() if v is not None})
        pos = m.end()
    return values, -1


@dataclass(frozen=True, slots=True)
class TracedSlotCall:
    """One ``kvm_set_user_memory`` line: a ``KVM_SET_USER_MEMORY_REGION`` that QEMU made."""

    as_id: int
    slot: int
    flags: int
    gpa: int
    size: int
    userspace_addr: int
    ret: int
    line: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        """``(as_id, gpa, size, flags)``, comparable with :attr:`qmirror.sim.kvm.SlotCall.key`."""
        return (self.as_id, self.gpa, self.size, self.flags)


@dataclass(frozen=True, slots=True)
class TracedIoeventfd:
    """One ``kvm_set_ioeventfd_mmio``/``_pio`` line: a ``KVM_IOEVENTFD`` that QEMU made."""

    space: str  # "mmio" or "pio"
    fd: int
    addr: int
    data: int
    assign: bool
    size: int
    match_data: bool
    line: int


def parse_trace(
    text: str, *, filename: str | None = None
) -> list[TracedSlotCall | TracedIoeventfd]:
    """The KVM slot and ioeventfd events of a trace log, in order.

    :raise ParseError: a line names one of these events but does not have its format
        (with the line and the column where it stops matching).
    """
    out: list[TracedSlotCall | TracedIoeventfd] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        head = _EVENT.match(raw)
        if head is None:
            continue
        event, rest = head.group(1), raw[head.end() :]
        m, failed = _match_fields(_SLOT if event == "kvm_set_user_memory" else _IOEVENTFD, rest)
        if failed >= 0:
            raise ParseError(
                f"not a {event} trace line",
                line=number,
                column=head.end() + failed + 1,
                source_line=raw,
                filename=filename,
            )
        if event == "kvm_set_user_memory":
            field = int(m["slot"])
            as_id = int(m["as"]) if "as" in m else field >> 16
            out.append(
                TracedSlotCall(
                    as_id,
                    field & 0xFFFF,
                    int(m["flags"], 16),
                    int(m["gpa"], 16),
                    int(m["size"], 16),
                    int(m["ua"], 16),
                    int(m["ret"]),
                    number,
                )
            )
        else:
            out.append(
                TracedIoeventfd(
                    event.rsplit("_", 1)[1],
                    int(m["fd"]),
                    int(m["addr"], 16),
                    int(m["val"], 16),
                    m["assign"] == "1",
                    int(m["size"]),
                    m["match"] == "1",
                    number,
                )
            )
    return out
