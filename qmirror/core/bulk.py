"""Bulk work on big texts and trees: keep the cyclic garbage collector out of the way.

Reading a tree of a million regions creates millions of objects in one go. CPython's
cyclic collector then runs again and again over all of them; measured on a 100k-region
machine it doubled the time of parsing and model building. Nothing in those phases
needs the collector (reference counting frees what they drop), so they pause it and
restore it afterwards; any cycles left over are collected later as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration; nesting is fine."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
