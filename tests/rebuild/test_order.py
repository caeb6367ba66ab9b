"""G3 trials re-render only what a swap can change, and with an index (issue 13).

Random trees (``tests/strategies.py``): swapping two children of a container changes
its FlatViews only where :func:`qmirror.rebuild.order._reordered` says, at each place
the walk reaches the container; a walk clipped with a :class:`ChildIndex` (built
before the swap, told of it) renders what a plain clipped walk renders.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import Drawn, machines

from qmirror.core import render as render_module
from qmirror.core.render import ChildIndex, FlatRange, render, render_machine, walk_visits
from qmirror.errors import ModelError
from qmirror.rebuild.order import _reordered


SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _owner(ranges: list[FlatRange], x: int) -> tuple[int, int, bool, bool] | None:
    for r in ranges:
        if r.start <= x < r.start + r.size:
            return (id(r.mr), r.offset_in_region + x - r.start, r.readonly, r.nonvolatile)
    return None


@SETTINGS
@given(machines(), st.data())
def test_a_swap_changes_flatviews_only_where_the_trial_renders_again(
    drawn: Drawn, data: st.DataObject
) -> None:
    indexed_from = render_module._INDEXED_FROM
    render_module._INDEXED_FROM = 0  # index every container, however few its children
    try:
        _swap_and_compare(drawn, data)
    finally:
        render_module._INDEXED_FROM = indexed_from


def _swap_and_compare(drawn: Drawn, data: st.DataObject) -> None:
    parents = [mr for mr in drawn.regions if len(mr.subregions) >= 2]
    assume(parents)
    parent = data.draw(st.sampled_from(parents))
    subs = parent.subregions
    i = data.draw(st.integers(0, len(subs) - 2))
    j = data.draw(st.integers(i + 1, len(subs) - 1))
    try:
        before = render_machine(drawn.machine)
    except ModelError:
        assume(False)
    index = ChildIndex()
    for view in before:
        if view.root is not None:
            render(view.root, 0, 1 << 64, index)  # the index sees the lists before the swap
    first, second = subs[i], subs[j]
    spans = _reordered(first, second, subs[i + 1 : j])
    subs[i], subs[j] = subs[j], subs[i]
    index.swap(parent, i, j)
    after = render_machine(drawn.machine)
    for old, new in zip(before, after, strict=True):
        if old.root is None:
            continue
        allowed = [
            (max(cs, base + lo), min(ce, base + hi))
            for visit, cs, ce, base in walk_visits(old.root)
            if visit.mr is parent
            for lo, hi in spans
        ]
        edges = {r.start for r in old.ranges + new.ranges}
        edges |= {r.start + r.size for r in old.ranges + new.ranges}
        for x in edges:
            if _owner(old.ranges, x) != _owner(new.ranges, x):
                assert any(lo <= x < hi for lo, hi in allowed), hex(x)
        for lo, hi in [(0, 1 << 64), *allowed]:
            if lo < hi:
                plain = render(new.root, lo, hi)
                indexed = render(new.root, lo, hi, index)
                assert [(r.start, r.size, id(r.mr), r.offset_in_region) for r in indexed] == [
                    (r.start, r.size, id(r.mr), r.offset_in_region) for r in plain
                ]
