"""The benchmark harness on tiny data: it runs end to end and its figures hang together.

The figures of a smoke run mean nothing; this only keeps `make bench` from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench.run import SMOKE

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smoke_run_writes_a_consistent_report(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--work", str(work), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    results = json.loads((out / "results-smoke.json").read_text())
    m = results["measurements"]
    assert results["machine"]["cores"] >= 1
    assert len(m["latency_small"]["latencies_s"]) == SMOKE.new_files
    assert len(m["latency_large"]["latencies_s"]) == SMOKE.new_files
    assert all(value > 0 for value in m["latency_large"]["latencies_s"])
    assert len(m["baseline"]["per_file_s"]) == SMOKE.baseline_files
    assert len(m["baseline_large"]["per_file_s"]) == SMOKE.baseline_files_large
    assert m["backfill"]["rows"] == SMOKE.streams * SMOKE.backfill
    assert m["extractor"]["rows"] == SMOKE.extractor_streams

    # The larger history run processed every file it was given, and its reporting
    # grain holds one row per stream per snapshot (the generator keeps ids unique).
    processed = SMOKE.history_large + SMOKE.new_files
    grain = m["storage"]["reporting_tables"]["fct_stream_snapshots"]
    assert grain["rows"] == processed * SMOKE.streams
    reporting = Path(m["latency_large"]["data_dir"]) / "reporting" / "fct_stream_snapshots"
    on_disk = sum(pq.read_metadata(path).num_rows for path in reporting.rglob("*.parquet"))
    assert on_disk == grain["rows"]

    report = (out / "RESULTS-smoke.md").read_text()
    assert f"| file-to-report latency, {SMOKE.history_large:,} snapshots processed" in report
    assert "Smoke run" in report
