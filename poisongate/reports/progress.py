"""Progress bars (rich) for long work: training epochs, cross-validation, scoring chunks, red-team cells. On
stderr, so stdout keeps the stage lines; off when stderr is not a terminal (CI, logs, a worker), and one at a
time: work nested in a bar (a red-team cell's training) or running beside it in another thread adds none."""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_active = threading.Lock()


@contextmanager
def bar(description: str, total: int, console=None) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n=1)`; a no-op where no bar is shown. `console`: a rich Console (default: stderr, shown
    only on a terminal)."""
    from rich.console import Console
    from rich.progress import Progress

    console = console or Console(stderr=True)
    if not (console.is_terminal and sys.stderr is not None) or not _active.acquire(blocking=False):
        yield lambda n=1: None
        return
    try:
        with Progress(console=console, transient=True) as shown:
            task = shown.add_task(description, total=total)
            yield lambda n=1: shown.advance(task, n)
    finally:
        _active.release()
