"""Reporting Parquet: only the partitions a batch changed, each written beside and renamed in."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import structlog

from transformer.dbt_runner import ExportSpec

log = structlog.get_logger(__name__)

SCOPE_TABLE = "main.int_batch_scope"


@dataclass(frozen=True)
class Written:
    """One reporting file written (or removed, when its partition became empty)."""

    path: Path
    rows: int


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _file_stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def export_changes(
    con: duckdb.DuckDBPyConnection, specs: list[ExportSpec], reporting: Path
) -> list[Written]:
    """Rewrite what the batch in `int_batch_scope` changed, for every exported model."""
    scope = con.execute(
        f"select distinct snapshot_at, snapshot_date from {SCOPE_TABLE} order by 1"
    ).fetchall()
    days = sorted({snapshot_date for _, snapshot_date in scope})
    written: list[Written] = []
    for spec in specs:
        folder = reporting / spec.model
        if spec.scope == "snapshot":
            assert spec.partition_by and spec.file_per
            for snapshot_at, snapshot_date in scope:
                target = (
                    folder
                    / f"date={snapshot_date}"
                    / f"{spec.model}_{_file_stamp(snapshot_at)}.parquet"
                )
                where = f"{spec.file_per} = timestamptz {_quote(snapshot_at.isoformat())}"
                written.append(_write(con, spec, where, target))
        elif spec.scope == "day":
            assert spec.partition_by
            for day in days:
                target = folder / f"date={day}" / f"{spec.model}.parquet"
                where = f"{spec.partition_by} = date {_quote(day.isoformat())}"
                written.append(_write(con, spec, where, target))
        elif spec.scope == "all":
            written.append(_write(con, spec, "true", folder / f"{spec.model}.parquet"))
        else:
            raise ValueError(f"{spec.model}: unknown export scope {spec.scope!r}")
    return written


def export_all(
    con: duckdb.DuckDBPyConnection, specs: list[ExportSpec], reporting: Path
) -> list[Written]:
    """Write every partition of every exported model (after a rebuild)."""
    written: list[Written] = []
    for spec in specs:
        folder = reporting / spec.model
        if spec.scope == "snapshot":
            assert spec.partition_by and spec.file_per
            keys = con.execute(
                f"select distinct {spec.file_per}, {spec.partition_by} from {spec.relation}"
            ).fetchall()
            for snapshot_at, snapshot_date in keys:
                target = (
                    folder
                    / f"date={snapshot_date}"
                    / f"{spec.model}_{_file_stamp(snapshot_at)}.parquet"
                )
                where = f"{spec.file_per} = timestamptz {_quote(snapshot_at.isoformat())}"
                written.append(_write(con, spec, where, target))
        elif spec.scope == "day":
            assert spec.partition_by
            days = con.execute(
                f"select distinct {spec.partition_by} from {spec.relation}"
            ).fetchall()
            for (day,) in days:
                target = folder / f"date={day}" / f"{spec.model}.parquet"
                where = f"{spec.partition_by} = date {_quote(day.isoformat())}"
                written.append(_write(con, spec, where, target))
        else:
            written.append(_write(con, spec, "true", folder / f"{spec.model}.parquet"))
    return written


def _write(con: duckdb.DuckDBPyConnection, spec: ExportSpec, where: str, target: Path) -> Written:
    """Write the rows beside `target`, then rename them in; remove `target` if there are none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.tmp")
    order = f" order by {spec.file_per}" if spec.file_per else ""
    query = f"select * from {spec.relation} where {where}{order}"
    try:
        con.execute(
            f"copy ({query}) to {_quote(str(partial))} "
            "(format parquet, compression zstd, row_group_size 122880)"
        )
        rows = _row_count(partial)
        if rows == 0:
            partial.unlink()
            target.unlink(missing_ok=True)
            _remove_empty(target.parent)
            return Written(target, 0)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Written(target, rows)


def remove_partials(reporting: Path) -> int:
    """Delete files a crash left half written beside their partitions (`.<name>.tmp`)."""
    removed = 0
    for partial in reporting.rglob(".*.tmp"):
        partial.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.warning("partial_exports_removed", files=removed)
    return removed


def _row_count(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: other snapshots of that day
        folder.rmdir()
