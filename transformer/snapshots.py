"""Reading landed snapshot files: is it complete, is it valid, and its rows in contract form."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from twitch_bi.contract import COLUMNS, REQUIRED_COLUMNS, snapshot_time_from_name

_MAGIC = b"PAR1"
_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
}
# The warehouse type of every contract column; what a hand-dropped file is cast to.
WAREHOUSE_TYPES = {
    "id": "varchar",
    "user_id": "varchar",
    "user_login": "varchar",
    "user_name": "varchar",
    "game_id": "varchar",
    "game_name": "varchar",
    "type": "varchar",
    "title": "varchar",
    "tags": "varchar[]",
    "viewer_count": "bigint",
    "started_at": "timestamptz",
    "language": "varchar",
    "thumbnail_url": "varchar",
    "is_mature": "boolean",
    "snapshot_at": "timestamptz",
}
assert tuple(WAREHOUSE_TYPES) == COLUMNS


class InvalidSnapshot(ValueError):
    """The file cannot be processed; the message is the reason shown in quarantine."""

    def __init__(self, reason: str, error_class: str = "InvalidSnapshot") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class


def has_parquet_footer(path: Path) -> bool:
    """Whether the file ends like a whole Parquet file (magic, sane footer length)."""
    try:
        size = path.stat().st_size
        if size < 12:
            return False
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(size - 8)
            tail = handle.read(8)
    except OSError:
        return False
    footer_length = struct.unpack("<I", tail[:4])[0]
    return head == _MAGIC and tail[4:] == _MAGIC and footer_length < size - 8


@dataclass(frozen=True)
class Snapshot:
    """A validated snapshot file, ready to be loaded."""

    path: Path
    snapshot_at: datetime
    rows: int
    select_sql: str  # selects the file's rows in contract form, plus file_name


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def inspect(con: duckdb.DuckDBPyConnection, path: Path) -> Snapshot:
    """Validate a landed file; raise InvalidSnapshot with a reason that names the problem."""
    source = f"read_parquet({_literal(path)})"
    name_time = snapshot_time_from_name(path.name)
    if name_time is None:
        # The name orders files, answers `status` and `reprocess --since`, and is how a
        # file replaces a snapshot; a file named otherwise would take that time from the
        # extractor's own file for it.
        raise InvalidSnapshot(
            "no snapshot time in the name: name the file streams_YYYYMMDDTHHMMSSZ.parquet "
            "(its UTC snapshot time) and drop it again",
            "BadSnapshotTime",
        )
    if path.stat().st_size == 0:
        raise InvalidSnapshot("empty file (0 bytes)", "EmptyFile")
    try:
        described = con.execute(f"describe select * from {source}").fetchall()
    except duckdb.Error as error:
        raise InvalidSnapshot(
            f"not a readable Parquet file: {_first_line(error)}", "NotParquet"
        ) from None
    types = {str(name): str(kind) for name, kind, *_ in described}

    missing = [column for column in REQUIRED_COLUMNS if column not in types]
    if missing:
        raise InvalidSnapshot(f"missing required column(s): {', '.join(missing)}", "MissingColumns")
    if types["viewer_count"] not in _INTEGER_TYPES:
        raise InvalidSnapshot(
            f"viewer_count is {types['viewer_count']}, expected an integer type", "BadType"
        )

    snapshot_expr = _snapshot_expression(name_time, types)
    selected = []
    for column, kind in WAREHOUSE_TYPES.items():
        if column == "snapshot_at":
            selected.append(f"{snapshot_expr} as snapshot_at")
        elif column in types:
            selected.append(f'cast("{column}" as {kind}) as {column}')
        else:
            selected.append(f"cast(null as {kind}) as {column}")
    name = path.name.replace("'", "''")
    select_sql = f"select {', '.join(selected)}, '{name}' as file_name from {source}"

    try:
        row = con.execute(
            f"""
            select
                count(*),
                count(id),
                count(distinct id),
                min(viewer_count),
                count(distinct snapshot_at),
                min(snapshot_at),
                count(*) - count(snapshot_at)
            from ({select_sql})
            """
        ).fetchone()
    except duckdb.OutOfMemoryException as error:
        raise InvalidSnapshot(
            f"too large to validate within DUCKDB_MEMORY_LIMIT: {_first_line(error)}", "TooLarge"
        ) from None
    except duckdb.Error as error:
        raise InvalidSnapshot(
            f"cannot read the rows as the contract's types: {_first_line(error)}", "BadType"
        ) from None
    assert row is not None
    rows, ids, distinct_ids, min_viewers, snapshots, snapshot_at, null_snapshots = row

    if rows == 0:
        raise InvalidSnapshot("no rows", "EmptySnapshot")
    if ids < rows:
        raise InvalidSnapshot(f"{rows - ids} row(s) without a stream id", "NullId")
    if distinct_ids < rows:
        raise InvalidSnapshot(
            f"{rows - distinct_ids} duplicate stream id(s) in one snapshot", "DuplicateIds"
        )
    if min_viewers is not None and min_viewers < 0:
        raise InvalidSnapshot(f"negative viewer_count ({min_viewers})", "NegativeViewers")
    if null_snapshots or snapshots != 1 or snapshot_at is None:
        raise InvalidSnapshot(
            "snapshot_at must hold one and the same time on every row "
            f"({snapshots} distinct times, {null_snapshots} row(s) empty or not a time)",
            "BadSnapshotTime",
        )
    return Snapshot(path, snapshot_at.astimezone(UTC), int(rows), select_sql)


def _snapshot_expression(name_time: datetime, types: dict[str, str]) -> str:
    if "snapshot_at" in types:
        if not types["snapshot_at"].startswith(("TIMESTAMP", "VARCHAR", "DATE")):
            raise InvalidSnapshot(
                f"snapshot_at is {types['snapshot_at']}, expected a timestamp", "BadSnapshotTime"
            )
        # A text column that is no time becomes null here and is reported below by name.
        return 'try_cast("snapshot_at" as timestamptz)'
    return f"timestamptz '{name_time.isoformat()}'"


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
