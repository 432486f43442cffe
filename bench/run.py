"""`make bench`: file-to-report latency, the proof of concept's way beside it, backfill, memory.

Everything runs as real processes on real files: `twitch-bi watch` (with
DUCKDB_MEMORY_LIMIT=1GB) is fed snapshot files renamed into landing/streams/, and the
time until it logs `batch_processed` (after every reporting partition is renamed in) is
the latency. Results go to bench/results.json and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq

from bench.datagen import START, SnapshotFactory, snapshot_times
from twitch_bi.contract import snapshot_file_name, snapshot_time_from_name

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Plan:
    """How big each measurement is; `--smoke` shrinks everything to seconds."""

    streams: int = 100_000
    history_small: int = 100
    history_large: int = 1000
    new_files: int = 20
    baseline_files: int = 5
    # The proof of concept at 1,000 snapshots takes about 45 s a file.
    baseline_files_large: int = 2
    backfill: int = 200
    extractor_streams: int = 100_000
    # The generator's snapshots are 15 minutes apart.
    per_day: int = 96
    memory_limit: str = "1GB"


SMOKE = Plan(
    streams=2_000,
    history_small=4,
    history_large=8,
    new_files=3,
    baseline_files=2,
    baseline_files_large=1,
    backfill=6,
    extractor_streams=2_000,
)


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    measurements: dict[str, Any] = field(default_factory=dict)


# -- data ---------------------------------------------------------------------------------

_factory: SnapshotFactory | None = None


def _init_factory(streams: int) -> None:
    global _factory
    _factory = SnapshotFactory(size=streams)


def _write_one(task: tuple[str, str, str]) -> str:
    at, landing, tmp = task
    assert _factory is not None
    return str(_factory.write(datetime.fromisoformat(at), Path(landing), Path(tmp)))


def generate(pool: Path, plan: Plan, count: int) -> list[Path]:
    """The snapshot files every scenario draws from, 15 minutes apart, made once."""
    times = snapshot_times(START, count)
    wanted = [pool / snapshot_file_name(at) for at in times]
    missing = [at for at, path in zip(times, wanted, strict=True) if not path.exists()]
    if missing:
        started = time.monotonic()
        tasks = [(at.isoformat(), str(pool), str(pool / ".tmp")) for at in missing]
        processes = min(2, os.cpu_count() or 1)
        with multiprocessing.get_context("fork").Pool(
            processes, initializer=_init_factory, initargs=(plan.streams,)
        ) as workers:
            for done, _ in enumerate(workers.imap_unordered(_write_one, tasks, chunksize=4), 1):
                if done % 100 == 0:
                    print(f"  generated {done}/{len(tasks)} snapshots", flush=True)
        print(f"  generated {len(tasks)} snapshots in {time.monotonic() - started:.0f} s")
    return wanted


def link_into(files: list[Path], data_dir: Path) -> None:
    """Land files the way the extractor does: beside landing/streams/, then renamed in."""
    incoming = data_dir / "landing" / ".incoming"
    streams = data_dir / "landing" / "streams"
    incoming.mkdir(parents=True, exist_ok=True)
    streams.mkdir(parents=True, exist_ok=True)
    for path in files:
        staged = incoming / path.name
        os.link(path, staged)
        os.replace(staged, streams / path.name)


# -- the transformer as a process ----------------------------------------------------------


class Transformer:
    """`twitch-bi watch` in its own process, with its log and its peak RSS."""

    def __init__(self, data_dir: Path, memory_limit: str) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}-transformer.log"
        env = {
            **os.environ,
            "DATA_DIR": str(data_dir),
            "DUCKDB_MEMORY_LIMIT": memory_limit,
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(BIN / "twitch-bi"), "watch"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.peak_rss = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        self._read_at = 0

    def _sample(self) -> None:
        handle = psutil.Process(self.process.pid)
        while self._sampling:
            try:
                self.peak_rss = max(self.peak_rss, handle.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.02)

    def reset_peak(self) -> None:
        self.peak_rss = 0

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        with open(self.log_path, encoding="utf-8") as log:
            for line in log:
                if f'"{name}"' in line and line.startswith("{"):
                    found.append(json.loads(line))
        return found

    def wait_for(self, name: str, count: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformer exited; see {self.log_path}")
            found = self.events(name)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise RuntimeError(f"no {count}x {name} within {timeout} s; see {self.log_path}")

    def processed_files(self) -> int:
        return sum(int(event.get("files", 0)) for event in self.events("batch_processed"))

    def wait_processed(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.processed_files() < count:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformer exited; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} files not processed in {timeout} s; {self.log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self._sampling = False
        self._log.close()


def _time_of_day(path: Path) -> str:
    at = snapshot_time_from_name(path.name)
    assert at is not None, path.name
    return at.strftime("%H:%M")


def _event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


# -- measurements ----------------------------------------------------------------------------


def measure_latency(
    work: Path, files: list[Path], history: int, plan: Plan, start: int = 0, backfill: int = 0
) -> dict[str, Any]:
    """Process `history` snapshots from `start` on, then time `new_files` more, one at a time.

    With `backfill`, the transformer starts on an empty folder and the history arrives in
    two drops: the first `backfill` files at once (timed: the backfill measurement), then
    the rest.
    """
    data_dir = work / f"history-{history}"
    shutil.rmtree(data_dir, ignore_errors=True)
    history_files = files[start : start + history]
    (data_dir / "landing" / "streams").mkdir(parents=True)
    if not backfill:
        link_into(history_files, data_dir)
    transformer = Transformer(data_dir, plan.memory_limit)
    started = time.monotonic()
    transformer.wait_for("transformer_started", 1, timeout=120)
    backfilled = None
    if backfill:
        backfilled = _backfill(transformer, history_files[:backfill], data_dir, plan)
        link_into(history_files[backfill:], data_dir)
    transformer.wait_processed(history, timeout=3600)
    history_seconds = time.monotonic() - started
    history_peak = transformer.peak_rss

    transformer.reset_peak()
    latencies = []
    new_files = files[start + history : start + history + plan.new_files]
    for index, path in enumerate(new_files):
        before = len(transformer.events("batch_processed"))
        dropped = time.time()
        link_into([path], data_dir)
        [*_, event] = transformer.wait_for("batch_processed", before + 1, timeout=300)
        latencies.append(_event_time(event) - dropped)
        print(f"  history {history}: new file {index + 1}: {latencies[-1]:.2f} s", flush=True)
    transformer.stop()
    rows = plan.streams * history
    return {
        "history": history,
        "new_files_from": _time_of_day(new_files[0]),
        "new_files_to": _time_of_day(new_files[-1]),
        "history_seconds": round(history_seconds, 1),
        "history_rows_per_second": round(rows / history_seconds),
        "history_peak_rss_mb": round(history_peak / 2**20),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(_percentile(latencies, 95), 3),
        "latency_max_s": round(max(latencies), 3),
        "latencies_s": [round(value, 3) for value in latencies],
        "peak_rss_mb": round(transformer.peak_rss / 2**20),
        "data_dir": str(data_dir),
        "backfill": backfilled,
    }


def measure_baseline(
    work: Path, files: list[Path], history: int, plan: Plan, count: int, start: int = 0
) -> dict[str, Any]:
    """The proof of concept's way: a new `dbt` process per file, rebuilding from all files."""
    poc_dir = work / f"poc-{history}"
    shutil.rmtree(poc_dir, ignore_errors=True)
    (poc_dir / "landing").mkdir(parents=True)
    (poc_dir / "reporting").mkdir()
    for path in files[start : start + history]:
        os.link(path, poc_dir / "landing" / path.name)
    env = {
        **os.environ,
        "POC_DIR": str(poc_dir),
        "DUCKDB_MEMORY_LIMIT": plan.memory_limit,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    project = REPO / "bench" / "poc"
    durations = []
    for path in files[start + history : start + history + count]:
        started = time.monotonic()
        os.link(path, poc_dir / "landing" / path.name)
        subprocess.run(
            [
                str(BIN / "dbt"),
                "run",
                "--project-dir",
                str(project),
                "--profiles-dir",
                str(project),
                "--target-path",
                str(poc_dir / "target"),
                "--log-path",
                str(poc_dir / "logs"),
                "--quiet",
            ],
            env=env,
            check=True,
        )
        durations.append(time.monotonic() - started)
        print(f"  baseline: new file {len(durations)}: {durations[-1]:.2f} s", flush=True)
    return {
        "history": history,
        "per_file_p50_s": round(statistics.median(durations), 3),
        "per_file_s": [round(value, 3) for value in durations],
    }


def _backfill(
    transformer: Transformer, files: list[Path], data_dir: Path, plan: Plan
) -> dict[str, Any]:
    """`files` dropped at once into a running transformer that has processed nothing."""
    transformer.reset_peak()
    dropped = time.time()
    link_into(files, data_dir)
    transformer.wait_processed(len(files), timeout=3600)
    batches = transformer.events("batch_processed")
    seconds = _event_time(batches[-1]) - dropped
    rows = plan.streams * len(files)
    return {
        "snapshots": len(files),
        "rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_second": round(rows / seconds),
        "batches": len(batches),
        "peak_rss_mb": round(transformer.peak_rss / 2**20),
    }


def measure_extractor(work: Path, plan: Plan) -> dict[str, Any]:
    """One `twitch-bi extract` of a whole emulator population with no latency."""
    data_dir = work / "extract"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    log_path = work / "emulator.log"
    config = json.dumps({"ratelimit_limit": 10_000_000})
    with open(log_path, "w", encoding="utf-8") as log:
        emulator = subprocess.Popen(
            [
                str(BIN / "twitch-bi"),
                "emulator",
                "--port",
                "0",
                "--size",
                str(plan.extractor_streams),
                "--config",
                config,
            ],
            env={**os.environ, "LOG_FORMAT": "json"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            for line in log_path.read_text(encoding="utf-8").splitlines():
                if '"emulator_started"' in line:
                    url = json.loads(line)["url"]
            time.sleep(0.1)
        assert url, f"emulator did not start; see {log_path}"
        env = {
            **os.environ,
            "DATA_DIR": str(data_dir),
            "LOG_FORMAT": "json",
            "TWITCH_API_BASE_URL": f"{url}/helix",
            "TWITCH_TOKEN_URL": f"{url}/oauth2/token",
            "TWITCH_CLIENT_ID": "emulator-client-id",
            "TWITCH_CLIENT_SECRET": "emulator-client-secret",
        }
        started = time.monotonic()
        crawl = subprocess.Popen(
            [str(BIN / "twitch-bi"), "extract"], env=env, stdout=subprocess.PIPE, text=True
        )
        peak = 0
        handle = psutil.Process(crawl.pid)
        while crawl.poll() is None:
            try:
                peak = max(peak, handle.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)
        wall = time.monotonic() - started
        output = crawl.stdout.read() if crawl.stdout else ""
        assert crawl.returncode == 0, output
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=30)
    [landed] = list((data_dir / "landing" / "streams").glob("*.parquet"))
    return {
        "streams": plan.extractor_streams,
        "rows": pq.read_metadata(landed).num_rows,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak / 2**20),
    }


def measure_storage(pool_files: list[Path], data_dir: Path) -> dict[str, Any]:
    landing_bytes = sum(path.stat().st_size for path in pool_files)
    landing_rows = sum(pq.read_metadata(path).num_rows for path in pool_files)
    reporting = data_dir / "reporting"
    per_table = {}
    for table in sorted(path for path in reporting.iterdir() if path.is_dir()):
        files = list(table.rglob("*.parquet"))
        per_table[table.name] = {
            "bytes": sum(path.stat().st_size for path in files),
            "rows": sum(pq.read_metadata(path).num_rows for path in files),
        }
    grain = per_table.get("fct_stream_snapshots", {"bytes": 0, "rows": 1})
    grain_rows = max(grain["rows"], 1)
    total_reporting = sum(item["bytes"] for item in per_table.values())
    warehouse = data_dir / "warehouse" / "twitch.duckdb"
    warehouse_bytes = warehouse.stat().st_size if warehouse.exists() else 0
    return {
        "compression": "zstd (level 3 in landing, DuckDB's default level in reporting)",
        "landing_bytes_per_stream_snapshot": round(landing_bytes / landing_rows, 1),
        "reporting_grain_bytes_per_stream_snapshot": round(grain["bytes"] / grain_rows, 1),
        "reporting_all_tables_bytes_per_stream_snapshot": round(total_reporting / grain_rows, 1),
        "warehouse_bytes_per_stream_snapshot": round(warehouse_bytes / grain_rows, 1),
        "reporting_tables": per_table,
    }


def _percentile(values: list[float], percentile: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * percentile / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def machine() -> dict[str, Any]:
    import dbt.version
    import duckdb

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "dbt_core": dbt.version.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


# -- report -----------------------------------------------------------------------------------


def render(results: Results, smoke: bool) -> str:
    m = results.measurements
    small, large = m["latency_small"], m["latency_large"]
    baseline, backfill = m["baseline"], m["backfill"]
    baseline_large = m["baseline_large"]
    extractor, storage = m["extractor"], m["storage"]
    flatness = large["latency_p50_s"] / small["latency_p50_s"]
    speedup = baseline["per_file_p50_s"] / small["latency_p50_s"]
    peak = max(small["peak_rss_mb"], large["peak_rss_mb"], backfill["peak_rss_mb"])
    machine_line = ", ".join(f"{key} {value}" for key, value in results.machine.items())

    def row(what: str, value: str, target: str, ok: bool | None) -> str:
        verdict = "" if ok is None else ("met" if ok else "**missed**")
        return f"| {what} | {value} | {target} | {verdict} |"

    lines = [
        "# Benchmarks",
        "",
        (
            "Smoke run (tiny data, for the test suite): figures mean nothing."
            if smoke
            else "Produced by `make bench` (`python -m bench.run`). Snapshots of "
            f"{results.plan['streams']:,} live streams, 96 a day, made from the emulator's "
            "population; the transformer runs as `twitch-bi watch` with "
            f"`DUCKDB_MEMORY_LIMIT={results.plan['memory_limit']}`."
        ),
        "",
        f"Machine: {machine_line}.",
        "",
        "| measurement | result | target | |",
        "| --- | --- | --- | --- |",
        row(
            f"file-to-report latency, {small['history']:,} snapshots processed (p50 / p95; "
            f"new files {small['new_files_from']}–{small['new_files_to']} UTC)",
            f"{small['latency_p50_s']:.2f} s / {small['latency_p95_s']:.2f} s",
            "",
            None,
        ),
        row(
            f"file-to-report latency, {large['history']:,} snapshots processed (p50 / p95; "
            f"new files {large['new_files_from']}–{large['new_files_to']} UTC)",
            f"{large['latency_p50_s']:.2f} s / {large['latency_p95_s']:.2f} s",
            "p50 ≤ 1.5 s",
            large["latency_p50_s"] <= 1.5,
        ),
        row(
            f"p50 at {large['history']:,} / p50 at {small['history']:,}",
            f"{flatness:.2f}",
            "≤ 1.3",
            flatness <= 1.3,
        ),
        row(
            f"proof of concept's way at {baseline['history']:,} (new dbt process, full rebuild), "
            "per file",
            f"{baseline['per_file_p50_s']:.2f} s",
            "",
            None,
        ),
        row("twitch-bi speed-up over it, per file", f"{speedup:.1f}×", "≥ 10×", speedup >= 10),
        row(
            f"the same at {large['history']:,} snapshots: proof of concept / twitch-bi",
            f"{baseline_large['per_file_p50_s']:.2f} s / {large['latency_p50_s']:.2f} s "
            f"({baseline_large['per_file_p50_s'] / large['latency_p50_s']:.1f}×)",
            "",
            None,
        ),
        row(
            f"backfill of {backfill['snapshots']} snapshots dropped at once",
            f"{backfill['rows_per_second']:,} rows/s ({backfill['seconds']} s, "
            f"{backfill['batches']} batches)",
            "≥ 1,000,000 rows/s",
            backfill["rows_per_second"] >= 1_000_000,
        ),
        row(
            "transformer peak RSS (latency runs and backfill)",
            f"{peak} MB",
            "≤ 1,536 MB",
            peak <= 1536,
        ),
        row(
            f"extractor, {extractor['streams']:,} streams, no latency: wall",
            f"{extractor['wall_s']} s",
            "≤ 8 s",
            extractor["wall_s"] <= 8,
        ),
        row(
            "extractor peak RSS",
            f"{extractor['peak_rss_mb']} MB",
            "≤ 400 MB",
            extractor["peak_rss_mb"] <= 400,
        ),
        row(
            "landing, bytes per stream-snapshot",
            f"{storage['landing_bytes_per_stream_snapshot']}",
            storage["compression"],
            None,
        ),
        row(
            "reporting `fct_stream_snapshots`, bytes per stream-snapshot",
            f"{storage['reporting_grain_bytes_per_stream_snapshot']}",
            "",
            None,
        ),
        row(
            "reporting, all tables, bytes per stream-snapshot",
            f"{storage['reporting_all_tables_bytes_per_stream_snapshot']}",
            "",
            None,
        ),
        row(
            "warehouse (DuckDB file), bytes per stream-snapshot",
            f"{storage['warehouse_bytes_per_stream_snapshot']}",
            "",
            None,
        ),
        "",
        "Processing the history itself (a backfill of that many snapshots): "
        f"{small['history_rows_per_second']:,} rows/s for 100, "
        f"{large['history_rows_per_second']:,} rows/s for 1,000.",
        "",
        "Raw figures: `bench/results.json`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work")
    parser.add_argument("--out", type=Path, default=REPO / "bench")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else Plan()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    results = Results(machine=machine(), plan=asdict(plan))

    total = plan.history_large + plan.new_files
    # A snapshot costs more late in its day than early (the day's aggregates grow), so
    # the smaller history starts where its new files fall at the same time of day as
    # the larger one's: the two latencies then differ by history alone.
    small_start = (plan.history_large - plan.history_small) % plan.per_day
    print(f"bench: {total} snapshots of {plan.streams:,} streams in {work}", flush=True)
    files = generate(work / ("pool-smoke" if args.smoke else "pool"), plan, total)

    started = time.monotonic()
    m = results.measurements
    m["extractor"] = measure_extractor(work, plan)
    m["latency_small"] = measure_latency(work, files, plan.history_small, plan, small_start)
    m["baseline"] = measure_baseline(
        work, files, plan.history_small, plan, plan.baseline_files, small_start
    )
    # The larger history begins with the backfill: its first files, dropped at once.
    m["latency_large"] = measure_latency(
        work, files, plan.history_large, plan, backfill=plan.backfill
    )
    m["backfill"] = m["latency_large"].pop("backfill")
    m["baseline_large"] = measure_baseline(
        work, files, plan.history_large, plan, plan.baseline_files_large
    )
    largest = Path(m["latency_large"]["data_dir"])
    m["storage"] = measure_storage(files[: plan.history_large], largest)
    m["seconds"] = round(time.monotonic() - started)

    args.out.mkdir(parents=True, exist_ok=True)
    name = "results-smoke" if args.smoke else "results"
    (args.out / f"{name}.json").write_text(json.dumps(asdict(results), indent=2) + "\n")
    report = render(results, args.smoke)
    (args.out / ("RESULTS-smoke.md" if args.smoke else "RESULTS.md")).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
