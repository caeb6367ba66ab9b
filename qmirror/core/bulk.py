"""Bulk work on big texts and trees: keep the cyclic garbage collector out of the way.

Reading a tree of a million regions creates millions of objects in one go. CPython's
cyclic collector then runs again and again over all of them; measured on a 100k-region
machine it doubled the time of parsing and model building. Nothing in those phases
needs the collector (reference counting frees what they drop), so they pause it and
restore it afterwards; any cycles left over are collected later as usual.

The collector is the process's, so the pause is bounded to the call and shared: the
first of any overlapping pauses (nested, or in other threads) stops the collector, the
last one to end restores the state it found. Constructing a qmirror object never
touches it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration; nesting and threads are fine."""
    global _depth, _was_enabled  # noqa: PLW0603 - one collector, one count of its pausers
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
