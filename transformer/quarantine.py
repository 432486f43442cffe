"""Moving a file the transformer cannot use out of the way, with the reason beside it."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import structlog

from twitch_bi.statefile import write_json

log = structlog.get_logger(__name__)


def quarantine(path: Path, quarantine_dir: Path, reason: str, error_class: str) -> Path | None:
    """Move `path` to quarantine/ and write `<file>.error.json`; nothing is deleted."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = quarantine_dir / path.name
    if target.exists():
        # Keep the earlier quarantined copy too: a second bad file of the same name is
        # a separate event worth keeping.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = quarantine_dir / f"{path.stem}.{stamp}{path.suffix}"
    try:
        size = path.stat().st_size
        os.replace(path, target)
    except FileNotFoundError:
        log.warning("file_vanished", file=path.name, reason=reason)
        return None
    except OSError:
        # Another filesystem (a bind mount of its own): copy, then remove.
        shutil.copy2(path, target)
        path.unlink()
    write_json(
        target.with_name(f"{target.name}.error.json"),
        {
            "file": path.name,
            "reason": reason,
            "error_class": error_class,
            "quarantined_at": datetime.now(UTC).isoformat(),
            "size_bytes": size,
        },
    )
    log.error("file_quarantined", file=path.name, reason=reason, error_class=error_class)
    return target
