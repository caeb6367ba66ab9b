"""Printing wide rich renderables (trees, tables): never cut, never folded into pipes.

On a terminal, rich's own layout rules (the terminal's width). Into a pipe or a file
there is no width to respect, so a tree or table is laid out as wide as it needs and
its lines are written without the trailing blanks of padded cells: CI logs and files
stay greppable.
"""

from __future__ import annotations

import contextlib

from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.padding import Padding
from rich.text import Text


#: Beyond this many columns a line is folded even into a file.
MAX_WIDTH = 1000


def is_tty(console: Console) -> bool:
    """Whether the console writes to a real terminal (``--color always`` does not count)."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return bool(console.file.isatty())
    return False


def print_wide(console: Console, renderable: RenderableType, *, indent: int = 0) -> None:
    """Print ``renderable`` (indented by ``indent`` columns), as described above."""
    if indent:
        renderable = Padding(renderable, (0, 0, 0, indent), expand=False)
    if is_tty(console):
        console.print(renderable, soft_wrap=False)
        return
    options = console.options.update(max_width=MAX_WIDTH)
    need = Measurement.get(console, options, renderable).maximum
    width = max(console.width, min(need, MAX_WIDTH))
    lines = console.render_lines(renderable, options.update_width(width), pad=False)
    for line in lines:
        parts = [(seg.text, seg.style) for seg in line if not seg.control]
        while parts and not parts[-1][0].strip():
            parts.pop()
        if parts:
            parts[-1] = (parts[-1][0].rstrip(), parts[-1][1])
        text = Text()
        for chunk, style in parts:
            text.append(chunk, style=style)
        console.print(text, soft_wrap=True, highlight=False)
