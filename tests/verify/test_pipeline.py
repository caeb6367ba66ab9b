"""The one pipeline (``qmirror.verify.check.run``) and its thin callers, on captured texts.

The verdicts expected here are QEMU's: each capture's own ``info mtree -f`` is what our
rendering must equal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmirror.core.model import Source
from qmirror.core.render import render_machine
from qmirror.errors import ParseError
from qmirror.text.flat import document_from_views, print_flat
from qmirror.verify.check import Options, check, run
from qmirror.verify.reading import read


X86 = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64"


def text(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def texts(config: str, flat: str = "info-mtree-f-o.txt") -> tuple[str, str]:
    return text(X86 / config / "info-mtree-o-D.txt"), text(X86 / config / flat)


def test_check_is_the_pipeline_that_compares() -> None:
    tree, flat = texts("q35")
    result = check(tree, flat)
    out = run(tree, flat)
    assert result.ok and out.comparison is not None and out.comparison.ok
    # The views a check hands out are the ones it compared: printed, they are QEMU's -f
    # line for line (blocks in another order: QEMU prints them in hash order, G9).
    doc = document_from_views(result.views, owners=True)
    doc.eol = "\r\n"
    assert sorted(print_flat(doc).splitlines()) == sorted(flat.splitlines())


def test_a_reading_infers_always_and_compares_nothing() -> None:
    tree, flat = texts("q35")
    out = run(tree, flat, Options(inference="always", compare=False))
    assert out.comparison is None and out.ours is None and out.qemu is not None
    reading = read(tree, flat, label="q35")
    assert [len(v.ranges) for v in reading.views] == [len(v.ranges) for v in out.views]
    assert [f.gap for f in reading.inferred] == [f.gap for f in out.inferred]


def test_never_inferring_is_strict() -> None:
    tree, flat = texts("q35")
    out = run(tree, flat, Options(inference="never"))
    assert out.options.strict and out.inferred == []
    assert check(tree, flat, strict=True).strict


def test_the_recorded_accelerator_wins_over_the_texts_but_not_over_the_user() -> None:
    tree, flat = texts("q35-kvm")
    recorded = run(tree, flat, Options(recorded_accel="kvm"))
    assert recorded.accel.value == "kvm" and recorded.accel.source is Source.TEXT
    assert recorded.comparison is not None and recorded.comparison.ok
    given = run(tree, flat, Options(accel="tcg", recorded_accel="kvm"))
    assert given.accel.value == "tcg" and "--accel" in given.accel.detail
    # A reading passes the accelerator recorded in its metadata the same way.
    assert read(tree, flat, meta={"accelerator": "kvm"}).accel.detail == recorded.accel.detail


def test_dispatch_is_compared_with_the_page_size_read_off_qemus_dump() -> None:
    tree, flat = texts("q35", "info-mtree-f-d.txt")
    out = run(tree, flat, Options(dispatch=True))
    assert out.comparison is not None and out.comparison.ok
    assert out.page_bits is not None and out.page_bits.value == 12
    assert out.page_bits.source is Source.INFERRED


def test_comparing_dispatch_needs_qemus_dump() -> None:
    tree, flat = texts("q35")
    with pytest.raises(ParseError, match="dispatch dump") as err:
        run(tree, flat, Options(dispatch=True), flat_name="q35-f.txt")
    assert err.value.filename == "q35-f.txt"
    # Rendering alone does not: the page size is then the given one, else the default.
    out = run(tree, None, Options(dispatch=True, page_bits=14))
    assert out.page_bits is not None and out.page_bits.value == 14
    assert out.comparison is None


def test_the_views_are_those_of_the_completed_model() -> None:
    tree, flat = texts("pc")
    out = run(tree, flat)
    again = render_machine(out.machine)
    assert [[(r.start, r.size, r.mr) for r in v.ranges] for v in out.views] == [
        [(r.start, r.size, r.mr) for r in v.ranges] for v in again
    ]
