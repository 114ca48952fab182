"""A small progress bar for long verbs (``convert`` of large models, ``sweep``).

It writes to ``stderr`` so that tables on ``stdout`` stay clean: on a terminal one line redrawn
in place, otherwise (logs, CI) one line per tenth of the work. With ``enabled=None`` (the
default of the verbs) it stays silent unless the work is still running after ``delay`` seconds,
so short calls print nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Progress of ``total`` steps of ``what``.

    Args:
        total: number of steps (``update`` calls with ``n=1``); ``0`` draws nothing.
        what: what is being done, printed before the bar.
        enabled: ``True`` always draws, ``False`` never, ``None`` only once ``delay`` seconds
            have passed (a long run).
        delay: seconds before an ``enabled=None`` bar appears.
        stream: where to draw (``sys.stderr`` when ``None``).
    """

    WIDTH = 24

    def __init__(self, total: int, what: str, enabled: bool | None = None,
                 delay: float = 2.0, stream: TextIO | None = None) -> None:
        self.total = int(total)
        self.what = what
        self.enabled = enabled
        self.delay = float(delay)
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._tenths = -1
        self._drawn = False

    def _visible(self) -> bool:
        if self.enabled is False or self.total <= 0:
            return False
        return self.enabled is True or time.perf_counter() - self.start >= self.delay

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps and redraw when visible."""
        self.done = min(self.done + n, self.total)
        if not self._visible():
            return
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        tenths = (10 * self.done) // self.total
        if not tty and tenths == self._tenths and self.done < self.total:
            return
        self._tenths = tenths
        elapsed = time.perf_counter() - self.start
        left = elapsed / max(self.done, 1) * (self.total - self.done)
        filled = int(self.WIDTH * self.done / self.total)
        line = (f"{self.what} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{self.done}/{self.total} ({elapsed:.0f} s, {left:.0f} s left)")
        end = "" if tty and self.done < self.total else "\n"
        self.stream.write(f"\r{line}" if tty else line)
        self.stream.write(end)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Finish the line of an interrupted terminal bar."""
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if self._drawn and tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
