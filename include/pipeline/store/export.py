"""The one owner of output/metrics.json, the metrics store's readable export: JSON lines, one per
(window, product), in (window_start, product_id) order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from include.pipeline.domain import codec
from include.pipeline.domain.windows import Metric, decode_metric


def read_lines(path: Path) -> Iterator[Metric]:
    """The lines of a metrics.json, each checked; a bad one names its line."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield decode_metric(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number} is {exc}; fix or remove the line") from None


def write_lines(path: Path, chunks: Iterable[list[Metric]]) -> int:
    """Replace the file atomically (readers see the old file or the new one, never half), readable
    as the umask allows; returns the lines written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    lines = 0
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                out.write(codec.encode_lines(chunk))
                lines += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return lines
