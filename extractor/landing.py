"""Pages of streams become one typed Parquet snapshot, renamed into landing/streams/ whole."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from twitch_bi.contract import SNAPSHOT_SCHEMA, CrawlMetadata, snapshot_file_name

# What Helix sends, before typing: timestamps are still strings. `tag_ids` and the old
# `community_ids` are deprecated and not part of the contract, so they are not kept.
_PAGE_SCHEMA = pa.schema(
    [
        field
        if field.name not in ("started_at", "snapshot_at")
        else pa.field(field.name, pa.string())
        for field in SNAPSHOT_SCHEMA
        if field.name != "snapshot_at"
    ]
)


class SnapshotBuffer:
    """Collects pages as Arrow batches, keeping the first sighting of every stream id."""

    def __init__(self) -> None:
        self._batches: list[pa.RecordBatch] = []
        self._seen: set[str] = set()
        self.rows = 0
        self.duplicates_removed = 0

    def add(self, streams: list[dict[str, Any]]) -> None:
        """Add one page; a stream whose id was seen before in this crawl is counted and dropped."""
        fresh = []
        for stream in streams:
            stream_id = stream.get("id")
            if not isinstance(stream_id, str) or not stream_id:
                raise ValueError(f"a stream has no string id: {str(stream)[:200]}")
            if stream_id in self._seen:
                self.duplicates_removed += 1
                continue
            self._seen.add(stream_id)
            fresh.append(stream)
        if fresh:
            # Keys missing from older Helix shapes (no user_login or game_name) become
            # nulls, keys outside the contract (tag_ids) are left out: the landed file
            # keeps what Twitch said, and cleaning belongs to dbt staging.
            self._batches.append(pa.RecordBatch.from_pylist(fresh, schema=_PAGE_SCHEMA))
            self.rows += len(fresh)

    def to_table(self, snapshot_at: datetime) -> pa.Table:
        """The snapshot with the contract's exact schema, whatever the pages contained."""
        table = pa.Table.from_batches(self._batches, schema=_PAGE_SCHEMA)
        started_at = table.column("started_at").cast(SNAPSHOT_SCHEMA.field("started_at").type)
        table = table.set_column(
            table.schema.get_field_index("started_at"), "started_at", started_at
        )
        snapshot = pa.array(
            [snapshot_at] * table.num_rows, type=SNAPSHOT_SCHEMA.field("snapshot_at").type
        )
        table = table.append_column(SNAPSHOT_SCHEMA.field("snapshot_at"), snapshot)
        return table.cast(SNAPSHOT_SCHEMA)


def land_snapshot(
    table: pa.Table,
    metadata: CrawlMetadata,
    snapshot_at: datetime,
    *,
    landing_dir: Path,
    tmp_dir: Path,
) -> Path:
    """Write the snapshot beside landing/streams/ and rename it in, so it appears whole."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    landing_dir.mkdir(parents=True, exist_ok=True)
    name = snapshot_file_name(snapshot_at)
    final = landing_dir / name
    partial = tmp_dir / f"{name}.partial"

    table = table.replace_schema_metadata({b"twitch_bi.snapshot": metadata.to_json()})
    try:
        pq.write_table(table, partial, compression="zstd", compression_level=3)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_dir(landing_dir)
    return final


def remove_partials(tmp_dir: Path) -> int:
    """Delete what a killed crawl left behind; nothing there is ever complete."""
    removed = 0
    if tmp_dir.is_dir():
        for leftover in tmp_dir.glob("*.partial"):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
