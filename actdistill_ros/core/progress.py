"""Progress bars (tqdm: count, rate, ETA) for every stage that runs longer than a few seconds.

On a terminal a bar redraws in place. Anywhere else (a log file, ``make demo | tee``, a CI log)
redrawing would pile up ``\\r`` fragments or, disabled, show nothing for minutes; there each
refresh is one plain line, at most every 30 s.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


class _Lines:
    """A stream for tqdm that turns each in-place redraw into one line."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip("\n")
        if line.strip() and line != self.last:  # closing redraws the final state once more
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(total: int, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True) -> tqdm:
    """A bar on stderr (``enabled=False``: silent, e.g. on ranks other than 0)."""
    stream = sys.stderr
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled,
                file=stream if terminal else _Lines(stream), dynamic_ncols=terminal,
                ncols=None if terminal else 100, mininterval=0.1 if terminal else LOG_INTERVAL_S)
