"""Numbers for people and for JSON: ``4 KiB``, ``16 EiB`` (binary prefixes, as QEMU
uses) and ``"0x%016x"`` addresses."""

from __future__ import annotations

from qmirror.core.model import MASK64


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_size(size: int) -> str:
    """``size`` bytes in binary units, exact whenever a short form is exact.

    The largest unit it reaches, with up to two decimals if that is exact; else the
    largest smaller unit in which it is a whole number below 10000; else an
    approximation marked ``~``.

    >>> human_size(4096), human_size(1536), human_size(0x7ff00000), human_size(1 << 64)
    ('4 KiB', '1.5 KiB', '2047 MiB', '16 EiB')
    >>> human_size(0x7fffffff)
    '~2 GiB'
    """
    if size < 1024:
        return f"{size} B"
    exp = min((size.bit_length() - 1) // 10, len(_UNITS) - 1)
    unit = 1 << (10 * exp)
    if size * 100 % unit == 0:
        text = f"{size / unit:.2f}".rstrip("0").rstrip(".")
        return f"{text} {_UNITS[exp]}"
    for smaller in range(exp - 1, -1, -1):
        step = 1 << (10 * smaller)
        if size % step == 0 and size // step < 10000:
            return f"{size // step} {_UNITS[smaller]}"
    text = f"{size / unit:.2f}".rstrip("0").rstrip(".")
    return f"~{text} {_UNITS[exp]}"


def hexs(value: int) -> str:
    """``"0x%016x"``, as in every JSON qmirror writes."""
    return f"0x{value & MASK64:016x}" if value < (1 << 64) else f"0x{value:x}"
