"""The metrics store: output/metrics.json, JSON lines, one per (window, product), upserted."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from include.pipeline import codec
from include.pipeline.windows import WindowKey

FIELDS = (
    "window_start", "window_end", "product_id", "product_name",
    "order_count", "total_revenue", "avg_order_value",
)
Store = dict[WindowKey, dict[str, Any]]


def load(path: Path) -> Store:
    if not path.exists():
        return {}
    store: Store = {}
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if line.strip():
            try:
                upsert(store, codec.decode(line))
            except (ValueError, *codec.DecodeError) as exc:
                raise ValueError(f"{path}:{number} is not a metrics record ({exc}); fix or remove the file") from None
    return store


def upsert(store: Store, record: Any) -> None:
    """Keep the newest totals per (window, product): records carry totals, so applying one
    twice changes nothing."""
    if not isinstance(record, dict) or any(field not in record for field in FIELDS):
        raise ValueError(f"a metrics record needs the fields {', '.join(FIELDS)}, got {record!r:.200}")
    store[(record["window_start"], record["product_id"])] = {field: record[field] for field in FIELDS}


def write(path: Path, store: Store) -> None:
    """Replace the file atomically: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = b"".join(codec.encode(store[key]) + b"\n" for key in sorted(store))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(lines)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
