"""The snapshot file contract shared by the extractor and the transformer (shared/DESIGN.md)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

import pyarrow as pa

SNAPSHOT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("user_login", pa.string()),
        pa.field("user_name", pa.string()),
        pa.field("game_id", pa.string()),
        pa.field("game_name", pa.string()),
        pa.field("type", pa.string()),
        pa.field("title", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("viewer_count", pa.int64()),
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("language", pa.string()),
        pa.field("thumbnail_url", pa.string()),
        pa.field("is_mature", pa.bool_()),
        pa.field("snapshot_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
COLUMNS = tuple(SNAPSHOT_SCHEMA.names)

# What a file dropped by hand must have at least; `snapshot_at` may come from the name.
REQUIRED_COLUMNS = (
    "id",
    "user_id",
    "user_login",
    "game_id",
    "game_name",
    "viewer_count",
    "started_at",
    "language",
)

METADATA_KEY = b"twitch_bi.snapshot"
FILE_PREFIX = "streams_"
FILE_SUFFIX = ".parquet"
_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME_TIME = re.compile(r"(\d{8}T\d{6}Z)")


def snapshot_file_name(snapshot_at: datetime) -> str:
    """`streams_<YYYYMMDD>T<HHMMSS>Z.parquet` for the UTC time a crawl started."""
    return f"{FILE_PREFIX}{snapshot_at.astimezone(UTC).strftime(_TIME_FORMAT)}{FILE_SUFFIX}"


def snapshot_time_from_name(name: str) -> datetime | None:
    """The UTC time in a snapshot file name, or None if the name carries none."""
    match = _NAME_TIME.search(PurePath(name).name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def is_candidate_name(name: str) -> bool:
    """Whether a file in landing/streams/ is meant to be processed (not hidden, not partial)."""
    base = PurePath(name).name
    if base.startswith(".") or base.endswith((".tmp", ".partial")):
        return False
    return base.endswith(FILE_SUFFIX)


@dataclass(frozen=True)
class CrawlMetadata:
    """What the extractor records about a crawl in the file's key-value metadata."""

    crawl_started_at: str
    crawl_ended_at: str
    duration_ms: int
    pages: int
    rows: int
    duplicates_removed: int
    source: str
    extractor_version: str
    stop_reason: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_schema_metadata(metadata: dict[bytes, bytes] | None) -> dict[str, Any] | None:
        if not metadata or METADATA_KEY not in metadata:
            return None
        value: dict[str, Any] = json.loads(metadata[METADATA_KEY])
        return value
