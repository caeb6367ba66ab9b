"""Hand-written edge-case trees (not captured from QEMU) with ``-f`` texts derived by hand.

Each tree below was written by hand in QEMU 7.2's tree format; each expected flat
text was worked out by hand from QEMU's rendering rules (docs/memory-semantics-notes.md §2,
§3) — not produced by qmirror. Every case checks that the tree re-prints byte for
byte and that the rendering equals the hand-derived FlatViews. Where the tree text
cannot carry a fact (docs/text-gaps.md), the strict check must fail and inference from
the hand-derived ``-f`` must recover exactly the expected attribute.
"""

from __future__ import annotations

import pytest

from qmirror.core.model import Source
from qmirror.text.tree import parse_tree_document, print_like
from qmirror.verify.check import check, load_tree


def text(*lines: str) -> str:
    """Join lines with LF and close the document like QEMU does (blank line at the end)."""
    return "\n".join(lines) + "\n"


def flat(as_lines: list[str], root: str, ranges: list[str]) -> str:
    return text("FlatView #0", *as_lines, f" Root memory region: {root}", *ranges, "")


HANDWRITTEN_EQUAL_PRIORITY_OVERLAP = text(
    "address-space: memory",
    "  0000000000000000-000000000000ffff (prio 0, i/o): sys",
    "    0000000000001000-0000000000001fff (prio 0, i/o): a",
    "    0000000000001800-00000000000027ff (prio 0, i/o): b",
    "",
)
# QEMU when b was added last (the documented default: the higher address is newer).
FLAT_B_NEWER = flat(
    [' AS "memory", root: sys'],
    "sys",
    [
        "  0000000000001000-00000000000017ff (prio 0, i/o): a",
        "  0000000000001800-00000000000027ff (prio 0, i/o): b",
    ],
)
# QEMU when a was added last.
FLAT_A_NEWER = flat(
    [' AS "memory", root: sys'],
    "sys",
    [
        "  0000000000001000-0000000000001fff (prio 0, i/o): a",
        "  0000000000002000-00000000000027ff (prio 0, i/o): b @0000000000000800",
    ],
)

HANDWRITTEN_NEGATIVE_PRIORITY = text(
    "address-space: memory",
    "  0000000000000000-000000000000ffff (prio 0, i/o): sys",
    "    0000000000000000-000000000000ffff (prio -1, ram): low",
    "    0000000000004000-0000000000004fff (prio 0, i/o): mmio",
    "    0000000000008000-0000000000008fff (prio -5, i/o): buried",
    "",
)
FLAT_NEGATIVE_PRIORITY = flat(
    [' AS "memory", root: sys'],
    "sys",
    [
        "  0000000000000000-0000000000003fff (prio -1, ram): low",
        "  0000000000004000-0000000000004fff (prio 0, i/o): mmio",
        "  0000000000005000-000000000000ffff (prio -1, ram): low @0000000000005000",
    ],
)

HANDWRITTEN_ALIAS_OF_ALIAS = text(
    "address-space: memory",
    "  0000000000000000-00000000ffffffff (prio 0, i/o): sys",
    "    0000000000100000-0000000000101fff (prio 0, ram): alias a2 @a1 "
    "0000000000000800-00000000000027ff",
    "",
    "memory-region: a1",
    "  0000000000000000-0000000000003fff (prio 0, ram): alias a1 @ram "
    "0000000000001000-0000000000004fff",
    "",
    "memory-region: ram",
    "  0000000000000000-000000000000ffff (prio 0, ram): ram",
    "",
)
FLAT_ALIAS_OF_ALIAS = flat(
    [' AS "memory", root: sys'],
    "sys",
    [
        "  0000000000100000-0000000000101fff (prio 0, ram): ram @0000000000001800",
    ],
)

HANDWRITTEN_ALIAS_INTO_CONTAINER = text(
    "address-space: memory",
    "  0000000000000000-00000000ffffffff (prio 0, i/o): sys",
    "    0000000000010000-00000000000107ff (prio 0, i/o): alias win @bus "
    "0000000000000180-000000000000097f",
    "",
    "memory-region: bus",
    "  0000000000000000-000000000000ffff (prio 0, i/o): bus",
    "    0000000000000100-00000000000001ff (prio 0, i/o): dev1",
    "    0000000000000800-0000000000000fff (prio 0, ram): dev2",
    "",
)
FLAT_ALIAS_INTO_CONTAINER = flat(
    [' AS "memory", root: sys'],
    "sys",
    [
        "  0000000000010000-000000000001007f (prio 0, i/o): dev1 @0000000000000080",
        "  0000000000010680-00000000000107ff (prio 0, ram): dev2",
    ],
)

HANDWRITTEN_ALIAS_WINDOW_CLIPPED = text(
    "address-space: memory",
    "  0000000000000000-000000000000ffff (prio 0, i/o): sys",
    "    0000000000002000-0000000000002fff (prio 0, i/o): sub",
    "      0000000000002800-00000000000047ff (prio 0, ram): alias big @r "
    "0000000000000100-00000000000020ff",
    "",
    "memory-region: r",
    "  0000000000000000-000000000000ffff (prio 0, ram): r",
    "",
)
FLAT_ALIAS_WINDOW_CLIPPED = flat(
    [' AS "memory", root: sys'],
    "sys",
    [
        "  0000000000002800-0000000000002fff (prio 0, ram): r @0000000000000100",
    ],
)

HANDWRITTEN_2_64_AND_OVERFLOW = text(
    "address-space: memory",
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): system",
    "    0000000000000000-ffffffffffffffff (prio -1, i/o): all",
    "    0000000000001000-0000000000001fff (prio 0, ram): ram",
    "[DETECTED OVERFLOW!]     ffffffffffff0000-000000000000ffff (prio 0, i/o): over",
    "",
)
FLAT_2_64_AND_OVERFLOW = flat(
    [' AS "memory", root: system'],
    "system",
    [
        "  0000000000000000-0000000000000fff (prio -1, i/o): all",
        "  0000000000001000-0000000000001fff (prio 0, ram): ram",
        "  0000000000002000-fffffffffffeffff (prio -1, i/o): all @0000000000002000",
        "  ffffffffffff0000-ffffffffffffffff (prio 0, i/o): over",
    ],
)

HANDWRITTEN_ZERO_SIZE = text(
    "address-space: memory",
    "  0000000000000000-000000000000ffff (prio 0, i/o): sys",
    "    0000000000001000-0000000000001fff (prio 0, ram): r",
    "    0000000000003000-0000000000003000 (prio 0, i/o): zero",
    "",
)
# QEMU, where `zero` really has size 0: it renders nothing.
FLAT_ZERO_SIZE = flat(
    [' AS "memory", root: sys'],
    "sys",
    [
        "  0000000000001000-0000000000001fff (prio 0, ram): r",
    ],
)

HANDWRITTEN_DUPLICATE_NAMES = text(
    "address-space: memory",
    "  0000000000000000-000000000000ffff (prio 0, i/o): sys",
    "    0000000000001000-0000000000001fff (prio 0, rom): alias w1 @dup "
    "0000000000000000-0000000000000fff",
    "    0000000000004000-0000000000005fff (prio 0, ram): alias w2 @dup "
    "0000000000001000-0000000000002fff",
    "    0000000000008000-0000000000008fff (prio 0, rom): alias w3 @dup "
    "0000000000000000-0000000000000fff",
    "",
    "memory-region: dup",
    "  0000000000000000-0000000000000fff (prio 0, rom): dup",
    "",
    "memory-region: dup",
    "  0000000000000000-0000000000003fff (prio 0, ram): dup",
    "",
)
FLAT_DUPLICATE_NAMES = flat(
    [' AS "memory", root: sys'],
    "sys",
    [
        "  0000000000001000-0000000000001fff (prio 0, rom): dup",
        "  0000000000004000-0000000000005fff (prio 0, ram): dup @0000000000001000",
        "  0000000000008000-0000000000008fff (prio 0, rom): dup",
    ],
)

HANDWRITTEN_READONLY_ALIAS_OVER_RAM = text(
    "address-space: memory",
    "  0000000000000000-00000000ffffffff (prio 0, i/o): sys",
    "    0000000000000000-00000000000fffff (prio 0, ram): alias low @mem "
    "0000000000000000-00000000000fffff",
    "    00000000000f0000-00000000000fffff (prio 1, ram): alias ro-win @mem "
    "00000000000f0000-00000000000fffff",
    "",
    "memory-region: mem",
    "  0000000000000000-00000000000fffff (prio 0, ram): mem",
    "",
)
FLAT_READONLY_ALIAS_OVER_RAM = flat(
    [' AS "memory", root: sys'],
    "sys",
    [
        "  0000000000000000-00000000000effff (prio 0, ram): mem",
        "  00000000000f0000-00000000000fffff (prio 0, rom): mem @00000000000f0000",
    ],
)

HANDWRITTEN_HIDDEN_PARENT = text(  # printed without -D: `pm` is disabled and hidden
    "address-space: I/O",
    "  0000000000000000-000000000000ffff (prio 0, i/o): io",
    "      0000000000000000-0000000000000003 (prio 0, i/o): evt",
    "      0000000000000004-0000000000000005 (prio 0, i/o): cnt",
    "    0000000000000010-0000000000000017 (prio 0, i/o): dev",
    "",
)
HANDWRITTEN_HIDDEN_PARENT_D = text(  # the same machine printed with -D
    "address-space: I/O",
    "  0000000000000000-000000000000ffff (prio 0, i/o): io",
    "    0000000000000000-000000000000007f (prio 0, i/o): pm [disabled]",
    "      0000000000000000-0000000000000003 (prio 0, i/o): evt",
    "      0000000000000004-0000000000000005 (prio 0, i/o): cnt",
    "    0000000000000010-0000000000000017 (prio 0, i/o): dev",
    "",
)
FLAT_HIDDEN_PARENT = flat(
    [' AS "I/O", root: io'],
    "io",
    [
        "  0000000000000000-000000000000000f (prio 0, i/o): io",
        "  0000000000000010-0000000000000017 (prio 0, i/o): dev",
        "  0000000000000018-000000000000ffff (prio 0, i/o): io @0000000000000018",
    ],
)

HANDWRITTEN_ODD_NAMES = text(
    "address-space: my space",
    "  0000000000000000-000000000000ffff (prio 0, i/o): root [r] @x",
    "    0000000000000000-0000000000000fff (prio 0, ram): alias my alias @target name "
    "0000000000000000-0000000000000fff",
    "    0000000000002000-0000000000002fff (prio 0, i/o): ((hwaddr)0x1fe00100 | off)",
    "",
    "memory-region: target name",
    "  0000000000000000-0000000000000fff (prio 0, ram): target name",
    "",
)
FLAT_ODD_NAMES = flat(
    [' AS "my space", root: root [r] @x'],
    "root [r] @x",
    [
        "  0000000000000000-0000000000000fff (prio 0, ram): target name",
        "  0000000000002000-0000000000002fff (prio 0, i/o): ((hwaddr)0x1fe00100 | off)",
    ],
)

#: (name, tree, QEMU's flat) that the tree alone decides.
DECIDED_BY_THE_TREE = [
    ("equal-priority overlap", HANDWRITTEN_EQUAL_PRIORITY_OVERLAP, FLAT_B_NEWER),
    ("negative priority", HANDWRITTEN_NEGATIVE_PRIORITY, FLAT_NEGATIVE_PRIORITY),
    ("alias of alias", HANDWRITTEN_ALIAS_OF_ALIAS, FLAT_ALIAS_OF_ALIAS),
    ("alias into a container", HANDWRITTEN_ALIAS_INTO_CONTAINER, FLAT_ALIAS_INTO_CONTAINER),
    ("alias window clipping", HANDWRITTEN_ALIAS_WINDOW_CLIPPED, FLAT_ALIAS_WINDOW_CLIPPED),
    ("2**64 sizes and overflow", HANDWRITTEN_2_64_AND_OVERFLOW, FLAT_2_64_AND_OVERFLOW),
    ("duplicate names", HANDWRITTEN_DUPLICATE_NAMES, FLAT_DUPLICATE_NAMES),
    ("disabled container with enabled children", HANDWRITTEN_HIDDEN_PARENT, FLAT_HIDDEN_PARENT),
    ("disabled container, -D", HANDWRITTEN_HIDDEN_PARENT_D, FLAT_HIDDEN_PARENT),
    ("names with spaces and brackets", HANDWRITTEN_ODD_NAMES, FLAT_ODD_NAMES),
]

#: (name, tree, QEMU's flat, gap, region, attribute value) the tree text cannot decide.
NEEDS_EVIDENCE = [
    (
        "equal-priority overlap, other order",
        HANDWRITTEN_EQUAL_PRIORITY_OVERLAP,
        FLAT_A_NEWER,
        "G3",
        "b",
        "below a",
    ),
    ("zero-size region", HANDWRITTEN_ZERO_SIZE, FLAT_ZERO_SIZE, "G4", "zero", "0x0"),
    (
        "read-only alias over RAM",
        HANDWRITTEN_READONLY_ALIAS_OVER_RAM,
        FLAT_READONLY_ALIAS_OVER_RAM,
        "G2",
        "ro-win",
        "yes",
    ),
]


@pytest.mark.parametrize(
    ("name", "tree", "qemu_flat"), DECIDED_BY_THE_TREE, ids=[c[0] for c in DECIDED_BY_THE_TREE]
)
def test_tree_alone_renders_the_hand_derived_flatviews(
    name: str, tree: str, qemu_flat: str
) -> None:
    result = check(tree, qemu_flat, strict=True)
    problems = [
        (v.address_spaces, [(hex(d.start), d.kind, d.fields) for d in v.diffs])
        for v in result.comparison.views
        if not v.ok
    ]
    assert result.ok, problems


@pytest.mark.parametrize(
    ("name", "tree"),
    [(c[0], c[1]) for c in DECIDED_BY_THE_TREE + NEEDS_EVIDENCE],
    ids=[c[0] for c in DECIDED_BY_THE_TREE + NEEDS_EVIDENCE],
)
def test_hand_written_trees_round_trip(name: str, tree: str) -> None:
    doc = parse_tree_document(tree)
    machine = load_tree(tree).machine
    assert print_like(machine, doc) == tree


@pytest.mark.parametrize(
    ("name", "tree", "qemu_flat", "gap", "region", "value"),
    NEEDS_EVIDENCE,
    ids=[c[0] for c in NEEDS_EVIDENCE],
)
def test_gaps_fail_strictly_and_are_inferred_from_qemus_flat(
    name: str, tree: str, qemu_flat: str, gap: str, region: str, value: str | None
) -> None:
    assert not check(tree, qemu_flat, strict=True).ok
    result = check(tree, qemu_flat)
    assert result.ok
    facts = [f for f in result.inferred if f.gap == gap]
    assert facts, f"no {gap} inference"
    holders = [
        mr
        for mr in result.machine.regions()
        for f in mr.facts
        if f.gap == gap and f.source is Source.INFERRED
    ]
    assert [mr.label for mr in holders] == [region]
    if value is not None:
        assert facts[0].value == value


def test_hidden_parent_children_are_not_rendered_and_the_stand_in_is_synthetic() -> None:
    machine = load_tree(HANDWRITTEN_HIDDEN_PARENT).machine
    io_root = machine.address_spaces[0].root
    assert io_root is not None
    hidden = [mr for mr in io_root.subregions if mr.synthetic]
    assert len(hidden) == 1 and not hidden[0].enabled
    assert [c.label for c in hidden[0].subregions] == ["cnt", "evt"]  # list order: newest first


def test_duplicate_names_resolve_to_distinct_regions() -> None:
    machine = load_tree(HANDWRITTEN_DUPLICATE_NAMES).machine
    root = machine.address_spaces[0].root
    assert root is not None
    by_name = {mr.label: mr for mr in root.subregions}
    w1, w2, w3 = by_name["w1"], by_name["w2"], by_name["w3"]
    assert w1.alias is w3.alias
    assert w1.alias is not w2.alias
    assert w1.alias is not None and w2.alias is not None
    assert (w1.alias.size, w2.alias.size) == (0x1000, 0x4000)
