"""File-to-report latency of `twitch-bi watch` for one big snapshot on top of some history.

    python -m tests.transformer.latency [--rows 100000] [--history 96] [--folder /tmp/latency]

Not a test (timings are measured, not asserted): it lands `--history` snapshots of
`--rows` rows (one emulator snapshot, re-stamped every 15 minutes), lets `rebuild`
process them, starts `watch`, renames one more snapshot into landing/streams/ and reads
from the logs how long it took until every reporting partition it changes was renamed
in, and where the time went.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import REPO, service_env, write_snapshot
from twitch_bi.contract import snapshot_file_name
from twitch_bi.settings import Layout

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)


def _restamped(template: pa.Table, moment: datetime, target: Path) -> Path:
    column = pa.array([moment] * len(template), pa.timestamp("us", tz="UTC"))
    table = template.set_column(
        template.schema.get_field_index("snapshot_at"), "snapshot_at", column
    )
    partial = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, partial, compression="zstd")
    partial.replace(target)
    return target


def _events(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=96, help="snapshots already processed")
    parser.add_argument(
        "--folder", type=Path, default=Path(tempfile.gettempdir()) / "twitch-bi-latency"
    )
    parser.add_argument("--runs", type=int, default=3, help="new snapshots to time, one by one")
    args = parser.parse_args()

    shutil.rmtree(args.folder, ignore_errors=True)
    data_dir = args.folder / "data"
    layout = Layout(data_dir).ensure()
    template_path = write_snapshot(data_dir, START, size=args.rows, folder=args.folder)
    template = pq.read_table(template_path)
    for index in range(args.history):
        moment = START + index * STEP
        _restamped(template, moment, layout.landing_streams / snapshot_file_name(moment))
    env = service_env(data_dir, LOG_LEVEL="debug")
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "twitch_bi.cli", "rebuild"],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    history_s = time.monotonic() - started

    log = args.folder / "watch.log"
    with open(log, "w") as out:
        watch = subprocess.Popen(
            [sys.executable, "-m", "twitch_bi.cli", "watch"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        while not any(e.get("event") == "transformer_started" for e in _events(log)):
            time.sleep(0.1)
        time.sleep(2)
        for run in range(args.runs):
            moment = START + (args.history + run) * STEP
            staged = _restamped(template, moment, args.folder / snapshot_file_name(moment))
            landed_at = datetime.now(UTC)
            os.replace(staged, layout.landing_streams / staged.name)
            while len([e for e in _events(log) if e.get("event") == "batch_processed"]) <= run:
                time.sleep(0.02)
            time.sleep(1)
            batch = [e for e in _events(log) if e.get("event") == "batch_processed"][run]
            begun = [e for e in _events(log) if e.get("event") == "batch_started"][run]
            done_at = datetime.fromisoformat(str(batch["timestamp"]))
            newest = max(p.stat().st_mtime for p in layout.reporting.rglob("*.parquet"))
            measured = {
                "rows": args.rows,
                "history_snapshots": args.history + run,
                "file_to_report_ms": int((done_at - landed_at).total_seconds() * 1000),
                "last_partition_renamed_ms": int((newest - landed_at.timestamp()) * 1000),
                "detect_ms": int(
                    (datetime.fromisoformat(str(begun["timestamp"])) - landed_at).total_seconds()
                    * 1000
                ),
                **{key: value for key, value in batch.items() if key.endswith("_ms")},
            }
            sys.stdout.write(json.dumps(measured) + "\n")
        models = [
            e["msg"]
            for e in _events(log)
            if e.get("event") == "dbt_event" and " OK " in str(e.get("msg"))
        ]
        summary = {"history_rebuild_s": round(history_s, 1), "last_dbt_nodes": models[-8:]}
        sys.stdout.write(json.dumps(summary) + "\n")
    finally:
        watch.terminate()
        watch.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
