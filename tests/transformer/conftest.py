"""Helpers for the transformer's tests: reporting contents, clean runs, bad files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, service_env
from twitch_bi.settings import Layout, Settings
from twitch_bi.statefile import read_json


def reporting_tables(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every file under reporting/, by relative path, with its rows in a fixed order."""
    reporting = data_dir / "reporting"
    con = duckdb.connect()
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for path in sorted(reporting.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(reporting).as_posix()
        if path.suffix != ".parquet":
            tables[relative] = [("not parquet",)]
            continue
        rows = con.execute(f"select * from read_parquet('{path}')").fetchall()
        tables[relative] = sorted(rows, key=repr)
    con.close()
    return tables


def run_cli(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one `twitch-bi` command to its end, as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "twitch_bi.cli", *args],
        env=service_env(data_dir, **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def clean_run(landed: list[Path], folder: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The reporting output of a fresh data folder given exactly these files at once."""
    data_dir = folder / "clean"
    Layout(data_dir).ensure()
    for path in landed:
        shutil.copy2(path, Layout(data_dir).landing_streams / path.name)
    result = run_cli(["rebuild"], data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    return reporting_tables(data_dir)


def status(data_dir: Path) -> dict[str, Any]:
    return read_json(data_dir / "state" / "transformer.status.json") or {}


def ledger_rows(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The ledger, read from the warehouse once no transformer holds it."""
    con = duckdb.connect(str(Layout(data_dir).warehouse_db), read_only=True)
    try:
        cursor = con.execute("select * from ops.ledger")
        columns = [column[0] for column in cursor.description]
        rows = {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}
    finally:
        con.close()
    return rows


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def snapshot_report(data_dir: Path, moment: datetime) -> Path:
    return (
        data_dir
        / "reporting"
        / "fct_stream_snapshots"
        / f"date={moment.date()}"
        / f"fct_stream_snapshots_{stamp(moment)}.parquet"
    )


def rewrite(path: Path, change: Any, target: Path | None = None) -> Path:
    """Write `path`'s table, changed by `change(table)`, to `target` (default: in place)."""
    table = pq.read_table(path)
    changed: pa.Table = change(table)
    destination = target or path
    partial = destination.with_name(f".{destination.name}.tmp")
    pq.write_table(changed, partial)
    partial.replace(destination)
    return destination


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> Iterator[Settings]:
    """Settings for a worker run inside the test process (dbt reads DATA_DIR)."""
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.delenv("DBT_PROJECT_DIR", raising=False)
    return Settings(data_dir=data_dir)
