"""KVM memory slots as QEMU 7.2 creates them (reference §5.6).

Here: which FlatRanges end up as a KVM slot of exactly their own start and size,
which is what QEMU's ``-f`` accelerator suffix (`` KVM``) shows (reference §4.7).
"""

from __future__ import annotations

from qmirror.model import RegionKind
from qmirror.render import FlatRange, FlatView


#: Host page size KVM aligns slots to (x86-64 and the Debian hosts we run on).
HOST_PAGE_SIZE = 4096
#: The address spaces KVM registers memory listeners on, by QEMU's names for them:
#: ``address_space_memory`` (as_id 0) and, on x86 with SMM, ``KVM-SMRAM`` (as_id 1).
KVM_ADDRESS_SPACES = ("memory", "KVM-SMRAM")


def gets_slot(r: FlatRange, *, readonly_mem: bool = True) -> bool:
    """Whether ``kvm_set_phys_mem`` would map (part of) this range into a slot.

    RAM (including ROM and RAM devices) always; a ROM device only in ROMD mode and
    only when the kernel allows read-only memory (``KVM_CAP_READONLY_MEM``, true on
    x86). MMIO never: every access exits to QEMU.
    """
    if r.mr.is_ram:
        return True
    return r.mr.kind is RegionKind.ROMD and r.mr.romd_mode and readonly_mem


def has_exact_slot(r: FlatRange, *, page_size: int = HOST_PAGE_SIZE) -> bool:
    """Whether a slot with exactly this range's start and size exists.

    Slots are the range aligned inward to the host page size, so only page-aligned
    ranges keep their exact extent; this is what QEMU looks up for the suffix.
    """
    return gets_slot(r) and r.start % page_size == 0 and r.size % page_size == 0


def accel_suffix(view: FlatView, r: FlatRange) -> tuple[str, ...]:
    """The accelerator words QEMU 7.2 appends to a range line under KVM.

    One ``KVM`` per address space of the view that KVM tracks and in which the
    range has an exact slot.
    """
    tracked = sum(1 for a in view.address_spaces if a.name in KVM_ADDRESS_SPACES)
    if tracked and has_exact_slot(r):
        return ("KVM",) * tracked
    return ()
