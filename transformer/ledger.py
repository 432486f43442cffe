"""The processing ledger: one row per landed file, in the warehouse beside the data it produced."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

DDL = """
create schema if not exists ops;
create schema if not exists landing;
create table if not exists ops.ledger (
    file_name varchar not null,
    size_bytes bigint,
    mtime_ns bigint,
    content_hash varchar,
    snapshot_at timestamptz,
    row_count bigint,
    status varchar not null,
    attempts integer not null default 0,
    error varchar,
    error_class varchar,
    force boolean not null default false,
    first_seen_at timestamptz not null default current_timestamp,
    processed_at timestamptz,
    duration_ms bigint,
    batch_id varchar,
    failed_since timestamptz,
    next_attempt_at timestamptz,
    quarantined_at timestamptz
);
create table if not exists ops.pending_removals (
    snapshot_at timestamptz not null,
    reason varchar
);
create table if not exists landing.batch_streams (
    id varchar,
    user_id varchar,
    user_login varchar,
    user_name varchar,
    game_id varchar,
    game_name varchar,
    type varchar,
    title varchar,
    tags varchar[],
    viewer_count bigint,
    started_at timestamptz,
    language varchar,
    thumbnail_url varchar,
    is_mature boolean,
    snapshot_at timestamptz,
    file_name varchar
);
"""

# Statuses a ledger row moves through.
PROCESSING = "processing"  # loaded into landing.batch_streams; dbt and exports under way
DONE = "done"
FAILED = "failed"  # the batch failed for a reason not (yet) blamed on the file; retried
QUARANTINED = "quarantined"

_ENTRY_COLUMNS = """
    file_name, size_bytes, mtime_ns, content_hash, snapshot_at, status, attempts, force,
    failed_since, next_attempt_at, processed_at, quarantined_at
"""


@dataclass(frozen=True)
class FileFacts:
    """What identifies a landed file's content."""

    name: str
    size: int
    mtime_ns: int
    content_hash: str


def file_facts(path: Path) -> FileFacts:
    """Size, modification time and a content hash (BLAKE2b, 1 MiB at a time)."""
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return FileFacts(path.name, stat.st_size, stat.st_mtime_ns, digest.hexdigest())


@dataclass(frozen=True)
class Entry:
    """A ledger row, as the worker needs it."""

    file_name: str
    size_bytes: int | None
    mtime_ns: int | None
    content_hash: str | None
    snapshot_at: datetime | None
    status: str
    attempts: int
    force: bool
    failed_since: datetime | None
    next_attempt_at: datetime | None
    processed_at: datetime | None  # set when it was last done: its snapshot is in the marts
    quarantined_at: datetime | None  # set once the file was moved to quarantine/


class Ledger:
    """Reads and writes `ops.ledger` on the worker's connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        con.execute(DDL)
        # Warehouses made by an earlier version lack the retry columns.
        for column in ("failed_since", "next_attempt_at", "quarantined_at"):
            con.execute(f"alter table ops.ledger add column if not exists {column} timestamptz")

    def entries(self, names: list[str] | None = None) -> dict[str, Entry]:
        """Every row, or only those of `names` (what an event hinted at)."""
        if names is None:
            rows = self.con.execute(f"select {_ENTRY_COLUMNS} from ops.ledger").fetchall()
        else:
            rows = self.con.execute(
                f"select {_ENTRY_COLUMNS} from ops.ledger where list_contains(?, file_name)",
                [names],
            ).fetchall()
        return {row[0]: Entry(*row) for row in rows}

    def get(self, file_name: str) -> Entry | None:
        row = self.con.execute(
            f"select {_ENTRY_COLUMNS} from ops.ledger where file_name = ?", [file_name]
        ).fetchone()
        return Entry(*row) if row else None

    def snapshot_owner(self, snapshot_at: datetime, other_than: str) -> str | None:
        """The file, other than `other_than`, that already holds this snapshot time."""
        row = self.con.execute(
            """
            select file_name from ops.ledger
            where snapshot_at = ? and file_name <> ? and status in ('done', 'processing')
            limit 1
            """,
            [snapshot_at, other_than],
        ).fetchone()
        return str(row[0]) if row else None

    def upsert(self, file_name: str, **values: Any) -> None:
        """Insert or update one row; call inside the caller's transaction when it has one."""
        if self.get(file_name) is None:
            self.con.execute(
                "insert into ops.ledger (file_name, status) values (?, ?)",
                [file_name, values.get("status", FAILED)],
            )
        if values:
            assignments = ", ".join(f"{column} = ?" for column in values)
            self.con.execute(
                f"update ops.ledger set {assignments} where file_name = ?",
                [*values.values(), file_name],
            )

    def processing(self) -> list[str]:
        rows = self.con.execute(
            "select file_name from ops.ledger where status = ? order by snapshot_at, file_name",
            [PROCESSING],
        ).fetchall()
        return [row[0] for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self.con.execute(
            "select status, count(*) from ops.ledger group by status"
        ).fetchall()
        return {status: int(count) for status, count in rows}

    def last_processed(self) -> tuple[str | None, datetime | None, datetime | None]:
        """The most recently processed file (the newest snapshot of the last batch: a
        batch's files share one processed time), when, and the newest snapshot time."""
        row = self.con.execute(
            """
            select
                (
                    select file_name from ops.ledger
                    where status = 'done'
                    order by processed_at desc, snapshot_at desc
                    limit 1
                ),
                max(processed_at),
                max(snapshot_at)
            from ops.ledger where status = 'done'
            """
        ).fetchone()
        if row is None:
            return None, None, None
        return row[0], row[1], row[2]

    def succeeded_since(self, moment: datetime) -> bool:
        """Whether any batch committed after `moment` (evidence the pipeline itself works)."""
        row = self.con.execute(
            "select count(*) from ops.ledger where status = 'done' and processed_at > ?",
            [moment],
        ).fetchone()
        return bool(row and row[0])

    def pending_removals(self) -> int:
        row = self.con.execute("select count(*) from ops.pending_removals").fetchone()
        return int(row[0]) if row else 0

    def request_reprocess(self, file_names: list[str]) -> int:
        if not file_names:
            return 0
        self.con.execute(
            "update ops.ledger set force = true, next_attempt_at = null "
            "where list_contains(?, file_name)",
            [file_names],
        )
        return len(file_names)
