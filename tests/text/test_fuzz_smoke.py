"""A short, fixed-seed run of ``scripts/fuzz`` (the full run is a benchmark, not a test).

Two thousand inputs mutated from the real fixtures go through the tree parser and
model rebuild (then render and print), the flat parser (then print) and the whole
check pipeline. Only a ParseError with a line and column and a short message, or a
ModelError naming a region, may come out; the seed is fixed, so a failure here
reproduces with ``scripts/fuzz --seed 1 --replay I``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from qmirror.errors import ModelError, ParseError


SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz"


def load_fuzz() -> ModuleType:
    """Import ``scripts/fuzz`` (no ``.py``: load it by path, registered for dataclasses)."""
    if "qmirror_fuzz" in sys.modules:
        return sys.modules["qmirror_fuzz"]
    loader = importlib.machinery.SourceFileLoader("qmirror_fuzz", str(SCRIPT))
    spec = importlib.util.spec_from_loader("qmirror_fuzz", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["qmirror_fuzz"] = module
    loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fuzz_smoke_run_finds_nothing() -> None:
    fuzz = load_fuzz()
    # No alarm of our own: pytest-timeout watches for hangs here.
    stats = fuzz.fuzz_inline(2000, seed=1, timeout=0)
    failures = [
        f"{f.signature} (input {f.input.index}: {f.input.mutations})\n{f.traceback}"
        for f in stats.failures
    ]
    assert not failures, "\n".join(failures[:3])
    assert stats.inputs == 2000
    # The mutations reach all three targets and both outcomes.
    for key in (
        "tree:ok",
        "tree:ParseError",
        "flat:ok",
        "flat:ParseError",
        "check:ok",
        "paste-tree:ok",
        "paste-flat:ok",
    ):
        assert stats.outcomes[key] > 0, key


def test_inputs_are_a_function_of_seed_and_index() -> None:
    fuzz = load_fuzz()
    seeds = fuzz.load_seeds()
    a = fuzz.make_input(seeds, 5, 42)
    b = fuzz.make_input(seeds, 5, 42)
    c = fuzz.make_input(seeds, 5, 43)
    assert (a.tree, a.flat, a.mutations) == (b.tree, b.flat, b.mutations)
    assert (a.tree, a.flat) != (c.tree, c.flat)


@pytest.mark.parametrize(
    "make, allowed",
    [
        (lambda: ParseError("x", line=3, column=4), True),
        (lambda: ParseError("x", line=0, column=4), False),
        (lambda: ParseError("x" * 5000, line=1, column=1), True),  # str() shortens the reason
        (lambda: ModelError("alias loop through 'a'"), True),
        (lambda: ModelError("something is wrong"), False),
        (lambda: IndexError("list index out of range"), False),
        (RecursionError, False),
    ],
)
def test_judge(make: Callable[[], BaseException], allowed: bool) -> None:
    assert (load_fuzz().judge(make()) is None) == allowed
