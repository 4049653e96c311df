"""Progress bars for long stages (Rich), silenced by --quiet and when nobody is watching."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    """Shows one bar per stage and remembers how long each stage took.

    A stage opened inside another (the pixel check inside decide) is timed on its own and its time
    is taken out of the outer stage's, so the timings add up to the run's time, each second once.
    """

    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self.timings: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._inner: list[float] = []  # per open stage: seconds spent in stages nested in it

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[callable]:
        """Context yielding `advance(n)`; records the stage's wall time."""
        start = time.perf_counter()
        done = 0
        self._inner.append(0.0)

        def count(n: int = 1) -> None:
            nonlocal done
            done += n

        if self.quiet or not total:
            try:
                yield count
            finally:
                self._record(name, start, done)
            return
        columns = (
            TextColumn(f"[bold]{name:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False, disable=not self.console.is_terminal and not _force()) as bar:
            task = bar.add_task(name, total=total)

            def advance(n: int = 1) -> None:
                count(n)
                bar.advance(task, n)

            try:
                yield advance
            finally:
                self._record(name, start, done)

    def _record(self, name: str, start: float, done: int) -> None:
        elapsed = time.perf_counter() - start
        inner = self._inner.pop() if self._inner else 0.0
        if self._inner:
            self._inner[-1] += elapsed  # the enclosing stage does not count these seconds again
        self.timings[name] = self.timings.get(name, 0.0) + elapsed - inner
        self.counts[name] = self.counts.get(name, 0) + done

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def _force() -> bool:
    """FACESIEVE_PROGRESS=1 shows bars even when stderr is not a terminal (logs, CI)."""
    import os

    return os.environ.get("FACESIEVE_PROGRESS") == "1" or sys.stderr.isatty()
