"""Reporting Parquet: only the files a batch changed, each written beside and renamed in.

Every exported dbt model carries `meta.export` with a `scope` that says how its files
are laid out and which of them a batch can change:

- `snapshot`: one file per `file_per` value (a snapshot) under `date=<partition_by>`;
  the batch's snapshots are written.
- `day`: one file per `date=<partition_by>` partition; the batch's days are written.
- `hourly_<N>h`: under `date=<partition_by>`, one file per hour of `file_per` (a
  timestamp whose date is `partition_by`, like a last sighting). A row moves to the
  current hour's file when a new snapshot sees it, so the rows a snapshot changes sit
  together in one small file instead of being spread over the day. A batch can change
  rows on the days within N hours of its snapshots:
  - a batch that only adds snapshots after every one exported so far changes exactly
    the rows its snapshots saw: they move into its hours' files, which are written,
    and leave older files, which are written again when their row count changed;
  - any other batch (late, reprocessed, removed snapshots) fingerprints every file
    of those days and writes those whose rows differ from what was written.
- `all`: one file, written again when its fingerprint changed.

What each file holds when written (a fingerprint: its row count and the sum of its
rows' hashes) is kept in `ops.reporting_files`, beside the data it describes, so a
rebuild that resets the warehouse forgets it too.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import structlog

from transformer.dbt_runner import ExportSpec

log = structlog.get_logger(__name__)

SCOPE_TABLE = "main.int_batch_scope"
TIMELINE_TABLE = "main.int_snapshots"
FINGERPRINT_TABLE = "ops.reporting_files"
_HOURLY = re.compile(r"hourly_(\d+)h")
_HOUR_STAMP = re.compile(r"_(\d{8}T\d{2})Z\.parquet$")
# Models exported at once: the machines this runs on have two cores or more.
EXPORT_THREADS = 2


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
    """Rewrite what the batch in `int_batch_scope` changed, for every exported model.

    Models are exported side by side, each on its own cursor: one file is one Parquet
    row group, which DuckDB writes on one core.
    """
    scope = con.execute(
        f"select distinct snapshot_at, snapshot_date from {SCOPE_TABLE} order by 1"
    ).fetchall()
    # Decided before this batch records any file of its own.
    extends = _batch_extends_exports(con, specs, reporting, scope)
    _ensure_fingerprint_table(con)

    def export(spec: ExportSpec) -> list[Written]:
        started = time.monotonic()
        with con.cursor() as cursor:
            # Hours and dates of timestamps are UTC's, whatever the session would say.
            cursor.execute("set TimeZone = 'UTC'")
            written = _export_model(cursor, spec, reporting, scope, extends)
        log.debug(
            "model_exported",
            model=spec.model,
            files=len(written),
            rows=sum(file.rows for file in written),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return written

    with ThreadPoolExecutor(EXPORT_THREADS, thread_name_prefix="export") as pool:
        return [written for files in pool.map(export, specs) for written in files]


def _export_model(
    con: duckdb.DuckDBPyConnection,
    spec: ExportSpec,
    reporting: Path,
    scope: list[tuple[datetime, date]],
    extends: bool,
) -> list[Written]:
    folder = reporting / spec.model
    written: list[Written] = []
    if spec.scope == "snapshot":
        for snapshot_at, snapshot_date in scope:
            written.append(_write_snapshot(con, spec, folder, snapshot_at, snapshot_date))
    elif spec.scope == "day":
        for day in sorted({snapshot_date for _, snapshot_date in scope}):
            written.append(_write_day(con, spec, folder, day))
    elif (hourly := _HOURLY.fullmatch(spec.scope)) is not None:
        if scope:
            reach = timedelta(hours=int(hourly.group(1)))
            if extends:
                window = (scope[0][0] - reach, scope[-1][0])
                scope_hours = {_hour(snapshot_at) for snapshot_at, _ in scope}
                written += _write_hours(con, spec, folder, window, always=scope_hours)
            else:
                window = (scope[0][0] - reach, scope[-1][0] + reach)
                written += _write_hours(con, spec, folder, window)
    elif spec.scope == "all":
        written += _write_if_changed(con, spec, folder / f"{spec.model}.parquet", "true")
    else:
        raise ValueError(f"{spec.model}: unknown export scope {spec.scope!r}")
    return written


def export_all(
    con: duckdb.DuckDBPyConnection, specs: list[ExportSpec], reporting: Path
) -> list[Written]:
    """Write every file of every exported model (after a rebuild)."""
    written: list[Written] = []
    for spec in specs:
        folder = reporting / spec.model
        if spec.scope == "snapshot":
            keys = con.execute(
                f"select distinct {spec.file_per}, {spec.partition_by} from {spec.relation}"
            ).fetchall()
            for snapshot_at, snapshot_date in keys:
                written.append(_write_snapshot(con, spec, folder, snapshot_at, snapshot_date))
        elif spec.scope == "day":
            days = con.execute(
                f"select distinct {spec.partition_by} from {spec.relation}"
            ).fetchall()
            for (day,) in days:
                written.append(_write_day(con, spec, folder, day))
        elif _HOURLY.fullmatch(spec.scope):
            row = con.execute(
                f"select min({spec.file_per}), max({spec.file_per}) from {spec.relation}"
            ).fetchone()
            if row is not None and row[0] is not None:
                written += _write_hours(con, spec, folder, (row[0], row[1]), everything=True)
        else:
            written += _write_if_changed(
                con, spec, folder / f"{spec.model}.parquet", "true", force=True
            )
    return written


def _batch_extends_exports(
    con: duckdb.DuckDBPyConnection,
    specs: list[ExportSpec],
    reporting: Path,
    scope: list[tuple[datetime, date]],
) -> bool:
    """Whether the batch only adds snapshots after every snapshot exported so far."""
    row = con.execute(
        f"""
        select
            count(*) filter (where change_type <> 'loaded'),
            min(snapshot_at)
        from {SCOPE_TABLE}
        """
    ).fetchone()
    if row is None or row[0] or row[1] is None:
        return False
    before = con.execute(
        f"select max(snapshot_at) from {TIMELINE_TABLE} where not is_in_batch"
    ).fetchone()
    if before is not None and before[0] is not None and row[1] <= before[0]:
        return False
    # A snapshot exported before and loaded again may have lost rows to older files.
    snapshot_files = [
        _snapshot_file(reporting / spec.model, spec.model, snapshot_at, snapshot_date)
        for spec in specs
        if spec.scope == "snapshot"
        for snapshot_at, snapshot_date in scope
    ]
    return bool(snapshot_files) and not _recorded(con, reporting, snapshot_files)


def _write_snapshot(
    con: duckdb.DuckDBPyConnection,
    spec: ExportSpec,
    folder: Path,
    snapshot_at: datetime,
    snapshot_date: date,
) -> Written:
    """Write one snapshot of a model as one file in its date partition."""
    assert spec.partition_by and spec.file_per
    target = _snapshot_file(folder, spec.model, snapshot_at, snapshot_date)
    where = f"{spec.file_per} = timestamptz {_quote(snapshot_at.isoformat())}"
    written = _write(con, spec, where, target)
    _record(con, folder.parent, target, str(written.rows) if written.rows else None)
    return written


def _snapshot_file(folder: Path, model: str, snapshot_at: datetime, snapshot_date: date) -> Path:
    return folder / f"date={snapshot_date}" / f"{model}_{_file_stamp(snapshot_at)}.parquet"


def _write_day(
    con: duckdb.DuckDBPyConnection, spec: ExportSpec, folder: Path, day: date
) -> Written:
    """Write one day partition of a model as one file."""
    assert spec.partition_by
    target = folder / f"date={day}" / f"{spec.model}.parquet"
    where = f"{spec.partition_by} = date {_quote(day.isoformat())}"
    return _write(con, spec, where, target)


def _write_hours(
    con: duckdb.DuckDBPyConnection,
    spec: ExportSpec,
    folder: Path,
    window: tuple[datetime, datetime],
    *,
    always: set[datetime] | None = None,
    everything: bool = False,
) -> list[Written]:
    """Write the hour files of the days of `window` that changed.

    With `always` (a batch that extends the timeline), the files of those hours are
    written and the others when their row count changed; otherwise, the files whose
    fingerprint changed (all of them with `everything`). Either way, what a written
    file holds is recorded as its fingerprint.
    """
    assert spec.partition_by and spec.file_per
    # Whole days: a row's file can only move within the reach of the batch, and a
    # file is fingerprinted with every row it holds.
    first = datetime.combine(window[0].date(), datetime.min.time(), window[0].tzinfo)
    end = datetime.combine(window[1].date(), datetime.min.time(), window[1].tzinfo)
    end += timedelta(days=1)
    hour = f"date_trunc('hour', {spec.file_per})"
    measure = "cast(count(*) as varchar)" if always is not None else _FINGERPRINT
    current = dict(
        con.execute(
            f"""
            select {hour}, {measure}
            from {spec.relation} as exported
            where {spec.file_per} >= ? and {spec.file_per} < ?
            group by 1
            """,
            [first, end],
        ).fetchall()
    )
    targets: dict[Path, datetime | None] = {
        _hour_file(folder, spec.model, moment): moment for moment in current
    }
    for path in _hour_files_on_disk(folder, spec.model, first, end):
        targets.setdefault(path, None)
    recorded = _recorded(con, folder.parent, targets)

    written = []
    for target, moment in sorted(targets.items()):
        value = current.get(moment) if moment is not None else None
        before = recorded.get(target)
        if always is not None:
            # Rows only left this hour's file: its row count says whether it changed.
            unchanged = (
                moment not in always and before is not None and (before.split(":")[0] == value)
            )
        else:
            unchanged = not everything and value is not None and before == value
        if unchanged and target.exists():
            continue
        # An hour with nothing left selects no rows, which removes its file.
        where = "false" if moment is None else f"{hour} = timestamptz {_quote(moment.isoformat())}"
        written.append(_write(con, spec, where, target))
        if always is not None and moment is not None:
            value = _fingerprint(con, spec, where)
        _record(con, folder.parent, target, value)
    return written


def _fingerprint(con: duckdb.DuckDBPyConnection, spec: ExportSpec, where: str) -> str | None:
    row = con.execute(
        f"select {_FINGERPRINT} from {spec.relation} as exported where {where}"
    ).fetchone()
    return str(row[0]) if row else None


def _write_if_changed(
    con: duckdb.DuckDBPyConnection, spec: ExportSpec, target: Path, where: str, force: bool = False
) -> list[Written]:
    """Write one file of a model unless its rows are those written last time."""
    fingerprint = _fingerprint(con, spec, where)
    recorded = _recorded(con, target.parent.parent, [target])
    if not force and target.exists() and recorded.get(target) == fingerprint:
        return []
    written = _write(con, spec, where, target)
    _record(con, target.parent.parent, target, fingerprint)
    return [written]


# A file's content, cheaply: its row count and the sum of its rows' hashes. DuckDB-only
# (hash() of a whole row), as is everything in this module.
_FINGERPRINT = (
    "cast(count(*) as varchar) || ':' || cast(coalesce(sum(hash(exported)), 0) as varchar)"
)


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _hour_file(folder: Path, model: str, moment: datetime) -> Path:
    return folder / f"date={moment.date()}" / f"{model}_{moment.strftime('%Y%m%dT%H')}Z.parquet"


def _hour_files_on_disk(folder: Path, model: str, first: datetime, end: datetime) -> list[Path]:
    """Hour files written before for the hours from `first` up to `end` (some may have
    emptied since)."""
    found = []
    for partition in folder.glob("date=*"):
        try:
            day = date.fromisoformat(partition.name.removeprefix("date="))
        except ValueError:
            continue
        if not first.date() <= day <= end.date():
            continue
        for path in partition.glob(f"{model}_*.parquet"):
            stamp = _HOUR_STAMP.search(path.name)
            if stamp is None:
                continue
            moment = datetime.strptime(stamp.group(1), "%Y%m%dT%H").replace(tzinfo=first.tzinfo)
            if first <= moment < end:
                found.append(path)
    return found


def _recorded(
    con: duckdb.DuckDBPyConnection, reporting: Path, targets: Iterable[Path]
) -> dict[Path, str]:
    """What was recorded when these files were last written, by file."""
    paths = {target.relative_to(reporting).as_posix(): target for target in targets}
    if not paths:
        return {}
    _ensure_fingerprint_table(con)
    rows = con.execute(
        f"select path, fingerprint from {FINGERPRINT_TABLE} where list_contains(?, path)",
        [list(paths)],
    ).fetchall()
    return {paths[path]: fingerprint for path, fingerprint in rows}


def _record(
    con: duckdb.DuckDBPyConnection, reporting: Path, target: Path, fingerprint: str | None
) -> None:
    """Remember what a file holds now (paths relative to reporting/, so it may move)."""
    _ensure_fingerprint_table(con)
    path = target.relative_to(reporting).as_posix()
    con.execute(f"delete from {FINGERPRINT_TABLE} where path = ?", [path])
    if fingerprint is not None:
        con.execute(f"insert into {FINGERPRINT_TABLE} values (?, ?)", [path, fingerprint])


def _ensure_fingerprint_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"create table if not exists {FINGERPRINT_TABLE} (path varchar, fingerprint varchar)"
    )


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
