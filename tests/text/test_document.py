"""The document reader: errors built where the text breaks the grammar, with the file
name, line and column of the reader's position (hand-written edge cases)."""

from __future__ import annotations

import pytest

from qmirror.errors import ParseError
from qmirror.text.document import read_tree
from qmirror.text.flat import parse_flat
from qmirror.text.reader import Reader
from qmirror.text.tree import parse_tree_document


def test_reader_errors_name_the_current_line_or_one_past_the_end() -> None:
    r = Reader(["FlatView #0", " AS"], "f.txt")
    assert r.expect("FlatView #", "x") == "0"
    err = r.error("bad", column=3)
    assert (err.filename, err.line, err.column, err.source_line) == ("f.txt", 2, 3, " AS")
    r.skip()
    assert r.at_end() and r.peek() is None
    err = r.error("the end")
    assert (err.line, err.source_line) == (3, "")


def test_an_unclosed_block_is_reported_past_the_last_line_of_the_file() -> None:
    text = "address-space: memory\n  0000000000000000-0000000000000fff (prio 0, i/o): io\n"
    with pytest.raises(ParseError) as exc:
        parse_tree_document(text, filename="t.txt")
    assert (exc.value.filename, exc.value.line, exc.value.column) == ("t.txt", 3, 1)
    assert "not closed by a blank line" in exc.value.reason


def test_a_bad_range_line_of_a_per_address_space_flat_text_names_the_file() -> None:
    # QEMU 2.9/2.10 layout (hand-written); the range line's type word is broken.
    text = (
        "address-space (flat view): memory\n"
        "  0000000000000000-0000000007ffffff (prio 0, rom): pc.ram\n"
        "\n"
        "address-space (flat view): I/O\n"
        "  0000000000000000-000000000000ffff (prio 0, xyz): io\n"
        "\n"
    )
    with pytest.raises(ParseError) as exc:
        parse_flat(text, filename="f.txt")
    assert (exc.value.filename, exc.value.line, exc.value.column) == ("f.txt", 5, 46)
    assert "type word" in exc.value.reason


def test_a_broken_dispatch_dump_names_the_file() -> None:
    text = (
        "FlatView #0\n"
        ' AS "memory", root: system\n'
        " Root memory region: system\n"
        "  0000000000000000-0000000007ffffff (prio 0, ram): pc.ram\n"
        "  Dispatch\n"
        "    Physical sectoins\n"
        "\n"
    )
    with pytest.raises(ParseError) as exc:
        parse_flat(text, filename="f.txt")
    assert (exc.value.filename, exc.value.line) == ("f.txt", 6)


def test_a_name_that_only_looks_like_an_owner_suffix_is_read_again_without_owners() -> None:
    lines = [
        "address-space: memory",
        "  0000000000000000-ffffffffffffffff (prio 0, i/o): system orphan",
        "    0000000000000000-0000000000000fff (prio 0, ram): ram",
        "",
    ]
    blocks, owners = read_tree(lines, None, prefixed=True, dialect=None)
    assert not owners
    assert [ln.name for ln in blocks[0].lines] == ["system orphan", "ram"]
