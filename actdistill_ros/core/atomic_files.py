"""Files a reader never sees half of: write beside the target, then rename over it.

Run markers, dataset indexes, ingest summaries and reports are read by the next stage or by a
resumed run; a kill or a full disk mid-write must leave the previous file (or none), never a
truncated one. ``os.replace`` is atomic on POSIX and Windows when both names are in one folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomically(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to ``<path>.tmp``, then rename it to ``path``; on any error the temporary
    file is removed and the error raised (``path`` untouched)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any, default: Callable[[Any], Any] | None = None) -> Path:
    """``data`` as indented JSON (``default``: as in ``json.dumps``, e.g. ``str`` for paths)."""
    text = json.dumps(data, indent=2, default=default) + "\n"
    return write_atomically(path, lambda tmp: tmp.write_text(text))
