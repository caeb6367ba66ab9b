"""Progress bars for long work (many VMs, big captures), on stderr and only on a terminal.

Usage::

    with Work(err, total=len(targets), what="reading") as work:
        for t in targets:
            work.step(f"reading {t}")
            ...

When stderr is not a terminal (CI logs, pipes) or is a dumb terminal, nothing is
drawn and nothing is printed: the same code runs silently.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def wants_progress(console: Console) -> bool:
    """Whether to draw progress on ``console``: an interactive, capable terminal."""
    return console.is_terminal and not console.is_dumb_terminal and console.is_interactive


class Work:
    """A counted piece of work with a transient progress bar.

    :param console: where to draw (the diagnostics console: stderr).
    :param total: steps expected (``None``: unknown, a spinner-like bar).
    :param what: the label shown before the first step.
    """

    def __init__(self, console: Console, *, total: int | None, what: str) -> None:
        self._progress: Progress | None = None
        self._task = None
        self._started = False
        if wants_progress(console):
            self._progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._task = self._progress.add_task(what, total=total)

    def __enter__(self) -> Work:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def step(self, description: str) -> None:
        """Start the next step: count the previous one as done, show this one."""
        if self._progress is None or self._task is None:
            return
        if self._started:
            self._progress.advance(self._task)
        self._started = True
        self._progress.update(self._task, description=description)

    def done(self) -> None:
        """Count the last step as done."""
        if self._progress is not None and self._task is not None and self._started:
            self._progress.advance(self._task)
            self._started = False
