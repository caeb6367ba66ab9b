"""The ``info mtree`` grammar: lines in and out, and errors that point at the problem."""

from __future__ import annotations

import pytest

from qmirror.core.model import ObjectRef, Ownership
from qmirror.errors import ParseError
from qmirror.rebuild.tree import build_machine
from qmirror.text.flat import parse_flat, print_flat
from qmirror.text.grammar import (
    format_flat_range,
    format_tree_line,
    hex16,
    last,
    parse_flat_range,
    parse_tree_line,
)
from qmirror.text.tree import parse_tree_document


def test_numbers_print_like_qemu() -> None:
    assert hex16(0) == "0000000000000000"
    assert hex16(-1) == "ffffffffffffffff"
    assert hex16(1 << 64) == "0000000000000000"
    assert (last(0), last(1), last(1 << 64)) == (0, 0, (1 << 64) - 1)


@pytest.mark.parametrize(
    "line",
    [
        "    00000000000a0000-00000000000bffff (prio 1, i/o): alias smram-region @pci "
        "00000000000a0000-00000000000bffff",
        "    0000000000000000-ffffffffffffffff (prio 0, i/o): alias bus master @system "
        "0000000000000000-ffffffffffffffff [disabled] "
        "owner:{dev path=/machine/unattached/device[2]}",
        "    0000000100000000-000000010fffffff (prio 0, nv-ram): alias nvdimm-memory @nv1 "
        "0000000000000000-000000000fffffff owner:{dev id=nvd1}",
        "  0000000000000000-ffffffffffffffff (prio -1, i/o): system "
        "parent:{obj path=/machine/unattached}",
        "      0000000000000070-0000000000000070 (prio 0, i/o): rtc-index",
        "  0000000000000000-0000000000000fff (prio 0, i/o): orphaned thing orphan",
    ],
)
def test_tree_lines_round_trip(line: str) -> None:
    owners = line.endswith(("}", "orphan"))
    parsed = parse_tree_line(line, 1, owners=owners)
    again = format_tree_line(
        level=parsed.level,
        start=parsed.start,
        end=parsed.end,
        priority=parsed.priority,
        nonvolatile=parsed.nonvolatile,
        type_word=parsed.type_word,
        name=parsed.name,
        alias_target=parsed.alias_target,
        alias_start=parsed.alias_start,
        alias_end=parsed.alias_end,
        disabled=parsed.disabled,
        ownership=parsed.ownership,
    )
    assert again == line


def test_alias_line_fields() -> None:
    p = parse_tree_line(
        "    0000000000000000-ffffffffffffffff (prio 0, i/o): alias bus master "
        "@system 0000000000000000-ffffffffffffffff [disabled] "
        "owner:{dev id=br1} parent:{obj path=/machine/unattached}",
        7,
        owners=True,
    )
    assert (p.name, p.alias_target, p.disabled, p.level) == ("bus master", "system", True, 2)
    assert p.ownership == Ownership(
        ObjectRef(True, "id", "br1"), ObjectRef(False, "path", "/machine/unattached")
    )


def test_alias_with_empty_names_is_an_alias() -> None:
    # QEMU prints an alias of "" named "" as `alias  @ WINDOW`: still an alias line.
    p = parse_tree_line(
        "    0000000000000000-0000000000000fff (prio 0, i/o): alias  @ "
        "0000000000000000-0000000000000fff",
        1,
        owners=False,
    )
    assert (p.name, p.alias_target, p.alias_end) == ("", "", 0xFFF)


@pytest.mark.parametrize(
    "line",
    [
        "  0000000000000000-00000000000bffff (prio 0, ram): pc.ram",
        "  00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000",
        "  0000000100000000-000000017fffffff (prio 0, ram): pc.ram @0000000080000000 KVM",
        "  00000000fec00000-00000000fec00fff (prio 0, i/o): kvm-ioapic",
        "  0000000000000071-0000000000000071 (prio 0, i/o): rtc @0000000000000001 "
        "owner:{dev path=/machine/unattached/device[8]}",
    ],
)
def test_flat_lines_round_trip(line: str) -> None:
    owners = "owner:" in line
    p = parse_flat_range(line, 1, owners=owners)
    assert (
        format_flat_range(
            start=p.start,
            end=p.end,
            priority=p.priority,
            nonvolatile=p.nonvolatile,
            type_word=p.type_word,
            name=p.name,
            offset=p.offset,
            ownership=p.ownership,
            accel=p.accel,
        )
        == line
    )


def where(exc: pytest.ExceptionInfo[ParseError]) -> tuple[int, int]:
    return exc.value.line, exc.value.column


@pytest.mark.parametrize(
    ("text", "line", "column", "reason"),
    [
        (
            "address-space: memory\n  00000000000x0000-0000000000000000 (prio 0, i/o): x\n\n",
            2,
            14,
            "hex digits",
        ),
        (
            "address-space: memory\n  0000000000000000+0000000000000000 (prio 0, i/o): x\n\n",
            2,
            19,
            "'-'",
        ),
        (
            "address-space: memory\n  0000000000000000-0000000000000fff (pri 0, i/o): x\n\n",
            2,
            36,
            "prio",
        ),
        (
            "address-space: memory\n  0000000000000000-0000000000000fff (prio x, i/o): x\n\n",
            2,
            43,
            "priority",
        ),
        (
            "address-space: memory\n  0000000000000000-0000000000000fff (prio 0, mmio): x\n\n",
            2,
            46,
            "type word",
        ),
        (
            "address-space: memory\n   0000000000000000-0000000000000fff (prio 0, i/o): x\n\n",
            2,
            1,
            "two per level",
        ),
        ("memory\n  0000000000000000-0000000000000fff (prio 0, i/o): x\n\n", 1, 1, "header"),
        (
            "address-space: memory\n  0000000000000000-0000000000000fff (prio 0, i/o): x\n",
            3,
            1,
            "blank line",
        ),
        (
            "address-space: memory\r\n  0000000000000000-0000000000000fff (prio 0, i/o): x\n\r\n",
            2,
            53,
            "line ending",
        ),
        (
            "address-space: memory\n  0000000000000000-0000000000000fff (prio 0, ram): "
            "alias a @t 0000000000000000-0000000000000000\n\nmemory-region: t\n"
            "  0000000000000000-0000000000000fff (prio 0, ram): t\n\n",
            2,
            63,
            "window",
        ),
        (
            "address-space: memory\n  0000000000000000-0000000000000fff (prio 0, ram): "
            "alias a @nowhere 0000000000000000-0000000000000fff\n\n",
            2,
            60,
            "no 'memory-region",
        ),
        ('FlatView #0\n AS "memory", root: system\n', 1, 1, "header"),
    ],
)
def test_tree_errors_name_line_column_and_reason(
    text: str, line: int, column: int, reason: str
) -> None:
    with pytest.raises(ParseError) as exc:
        build_machine(parse_tree_document(text, filename="t.txt"))
    assert where(exc) == (line, column), str(exc.value)
    assert reason in exc.value.reason
    shown = str(exc.value)
    assert shown.startswith(f"t.txt:{line}:{column}: ")
    if exc.value.source_line:
        assert shown.splitlines()[-1].index("^") == 4 + column - 1


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("FlatView #x\n", 1, "FlatView #N"),
        ("FlatView #0\n Root memory region: system\n", 2, "AS"),
        (
            'FlatView #0\n AS "memory", root: system\n  0000000000000000-0000000000000fff '
            "(prio 0, ram): r\n\n",
            3,
            "Root memory region",
        ),
        (
            'FlatView #0\n AS "memory", root: system\n Root memory region: system\n\n',
            4,
            "range lines",
        ),
        (
            'FlatView #0\n AS "memory", root: system\n Root memory region: system\n'
            "  0000000000000000-0000000000000fff (prio 0, ram): r @0000000000000000\n\n",
            4,
            "offset",
        ),
        (
            'FlatView #0\n AS "memory", root: system\n Root memory region: system\n'
            "  0000000000000000-0000000000000fff (prio 0, ram): r\n",
            5,
            "blank line",
        ),
    ],
)
def test_flat_errors(text: str, line: int, reason: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse_flat(text)
    assert exc.value.line == line, str(exc.value)
    assert reason in exc.value.reason


def test_flat_document_round_trip_with_dispatch_lines_kept() -> None:
    text = (
        'FlatView #0\r\n AS "I/O", root: io\r\n Root memory region: io\r\n'
        "  0000000000000000-000000000000ffff (prio 0, i/o): io\r\n  Dispatch\r\n"
        "    Physical sections\r\n      #0 @0000000000000000..ffffffffffffffff (noname) "
        "[unassigned]\r\n    Nodes (9 bits per level, 6 levels) ptr=[0] skip=1\r\n"
        "      [0]\r\n\t  0       skip=3  ptr=[3]\r\n\t  1..511  skip=1  ptr=NIL\r\n\r\n"
        'FlatView #1\r\n AS "bm", root: bus master container\r\n'
        " Root memory region: (none)\r\n  No rendered FlatView\r\n\r\n"
    )
    doc = parse_flat(text)
    assert [v.root for v in doc.views] == ["io", None]
    assert len(doc.views[0].dispatch) == 7
    assert print_flat(doc) == text


def test_very_long_line_error_keeps_the_caret_visible() -> None:
    bad = (
        "address-space: m\n  "
        + "0" * 16
        + "-"
        + "0" * 16
        + " (prio 0, i/o): "
        + "n" * 5000
        + "\n   x\n\n"
    )
    with pytest.raises(ParseError) as exc:
        parse_tree_document(bad)
    shown = str(exc.value).splitlines()
    assert exc.value.line == 3
    assert len(shown[1]) < 200
