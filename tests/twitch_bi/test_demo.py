"""`twitch-bi demo`: the whole pipeline as processes, the same tables every time it runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _demo(data_dir: Path) -> str:
    command = ["demo", "--data-dir", str(data_dir), "--snapshots", "6", "--size", "400"]
    result = subprocess.run(
        [sys.executable, "-m", "twitch_bi.cli", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _tables(reporting: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    return {
        table.name: sorted(
            con.execute(
                f"select * from read_parquet('{table}/**/*.parquet', hive_partitioning = false)"
            ).fetchall(),
            key=repr,
        )
        for table in sorted(reporting.iterdir())
    }


def test_demo_prints_its_summary_and_gives_the_same_tables_when_run_again(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "demo"

    first_output = _demo(data_dir)
    first = _tables(data_dir / "reporting")
    second_output = _demo(data_dir)
    second = _tables(data_dir / "reporting")

    summary = re.search(r"Processed (\d+) snapshots, ([\d,]+) stream rows", first_output)
    assert summary is not None, first_output
    assert summary.group(1) == "6"
    snapshot_rows = first["fct_stream_snapshots"]
    assert int(summary.group(2).replace(",", "")) == len(snapshot_rows)
    assert "Top 5 games by hours watched:" in first_output
    assert "Top 5 channels by average viewers:" in first_output
    assert len({(row[0], row[2]) for row in snapshot_rows}) == len(snapshot_rows)
    assert set(first) == {
        "agg_games_daily",
        "agg_snapshots",
        "dim_channel_names",
        "dim_channels",
        "dim_games",
        "fct_broadcasts",
        "fct_stream_snapshots",
        "fct_streams",
    }
    assert second == first
    top = first_output.index("Top 5 games")
    assert second_output[second_output.index("Top 5 games") :] == first_output[top:]
