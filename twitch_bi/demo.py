"""`twitch-bi demo`: the whole pipeline on the emulator, as separate processes, then a summary."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import requests

from twitch_bi.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from twitch_bi.statefile import read_json

INTERVAL_MINUTES = 15
# Start just before midnight so the demo's snapshots fill two date partitions.
EMULATOR_START = "2026-03-01T23:00:00Z"


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "twitch_bi.cli", *args]


@contextmanager
def _service(
    args: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[str]]:
    """A child process logging to a file, stopped with SIGTERM (then killed) on exit."""
    with open(log_path, "a", encoding="utf-8") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_for_emulator(log_path: Path, process: subprocess.Popen[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited early; see {log_path}")
        for line in log_path.read_text(encoding="utf-8").splitlines():
            if '"emulator_started"' in line:
                return str(json.loads(line)["url"])
        time.sleep(0.1)
    raise RuntimeError(f"the emulator did not start within {timeout} s; see {log_path}")


def _post(url: str, body: dict[str, object]) -> None:
    requests.post(url, json=body, timeout=10).raise_for_status()


def _wait_processed(
    state: Path, expected: int, process: subprocess.Popen[str], timeout: float
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the transformer exited early; see its log")
        status = read_json(state / "transformer.status.json") or {}
        if status.get("processed") == expected and not status.get("pending"):
            return status
        time.sleep(0.2)
    raise RuntimeError(f"the transformer did not process {expected} files in {timeout} s: {status}")


def run_demo(data_dir: Path | None = None, snapshots: int = 8, size: int = 3000) -> int:
    data_dir = (data_dir or Path("data") / "demo").resolve()
    if data_dir.exists():
        shutil.rmtree(data_dir)
    logs = data_dir / "logs"
    logs.mkdir(parents=True)
    started = time.monotonic()

    base_env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "LOG_FORMAT": "json",
        "EXTRACT_EVERY_MINUTES": str(INTERVAL_MINUTES),
        "PYTHONUNBUFFERED": "1",
    }
    print(f"twitch-bi demo: {snapshots} snapshots of {size} live streams, data in {data_dir}")
    emulator_config = json.dumps({"start": EMULATOR_START})
    with _service(
        _command("emulator", "--port", "0", "--size", str(size), "--config", emulator_config),
        base_env,
        logs / "emulator.log",
    ) as emulator:
        url = _wait_for_emulator(logs / "emulator.log", emulator)
        env = {
            **base_env,
            "TWITCH_API_BASE_URL": f"{url}/helix",
            "TWITCH_TOKEN_URL": f"{url}/oauth2/token",
            "TWITCH_CLIENT_ID": DEFAULT_CLIENT_ID,
            "TWITCH_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        }
        print(f"  emulator    {url} (simulated clock from {EMULATOR_START})")
        with _service(_command("watch"), env, logs / "transformer.log") as transformer:
            print(f"  transformer watching {data_dir / 'landing' / 'streams'}")
            for number in range(1, snapshots + 1):
                with open(logs / "extractor.log", "a", encoding="utf-8") as log:
                    code = subprocess.call(
                        _command("extract"), env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                if code != 0:
                    print(f"  crawl {number} failed; see {logs / 'extractor.log'}", file=sys.stderr)
                    return 1
                print(f"  crawl {number}/{snapshots} landed")
                _post(f"{url}/_emulator/clock", {"advance_seconds": INTERVAL_MINUTES * 60})
            status = _wait_processed(data_dir / "state", snapshots, transformer, timeout=120)

    _print_summary(data_dir, status, time.monotonic() - started)
    return 0


def _print_summary(data_dir: Path, status: dict[str, object], seconds: float) -> None:
    reporting = data_dir / "reporting"
    con = duckdb.connect()
    facts = f"read_parquet('{reporting}/fct_streams/*/*.parquet')"
    grain = f"read_parquet('{reporting}/fct_stream_snapshots/*/*.parquet')"
    row = con.execute(f"select count(*), count(distinct snapshot_at) from {grain}").fetchone()
    rows, snapshot_count = row if row else (0, 0)
    games = con.execute(
        f"""
        select coalesce(game_name, '(no category)'), sum(hours_watched) as hours
        from {facts} group by 1 order by hours desc limit 5
        """
    ).fetchall()
    channels = con.execute(
        f"""
        select arg_max(user_login, last_seen_at),
            sum(hours_watched) / nullif(sum(hours_streamed), 0) as avg_viewers
        from {facts} group by user_id order by avg_viewers desc limit 5
        """
    ).fetchall()

    print()
    print(
        f"Processed {status.get('processed')} snapshots, {rows:,} stream rows "
        f"({snapshot_count} snapshots in reporting), in {seconds:.0f} s."
    )
    print("\nTop 5 games by hours watched:")
    for name, hours in games:
        print(f"  {name:<32} {hours:>12,.1f} h")
    print("\nTop 5 channels by average viewers:")
    for login, average in channels:
        print(f"  {login:<32} {average:>12,.0f}")
    print(f"\nReporting Parquet (Hive-partitioned by date): {reporting}/")
    for table in sorted(path.name for path in reporting.iterdir() if path.is_dir()):
        print(f"  {table}/")
    print(f"Logs: {data_dir / 'logs'}/")
