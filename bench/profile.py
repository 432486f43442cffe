"""Where one snapshot's time goes: `python -m bench.profile` after `make bench`.

Copies a data folder the benchmark built (100 snapshots processed, by default), runs
`twitch-bi watch` on the copy with debug logs, drops the next snapshots of the pool one
at a time, and prints the median time of each step: loading, every dbt model and test,
every exported model, and the checkpoint that follows when the queue is idle.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.run import REPO, Transformer, link_into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    work = REPO / "bench" / "work"
    parser.add_argument("--data", type=Path, default=work / "history-100")
    parser.add_argument("--pool", type=Path, default=work / "pool")
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--memory-limit", default="1GB")
    args = parser.parse_args(argv)
    if not (args.data / "warehouse").is_dir():
        print(f"{args.data} holds no warehouse: run `make bench` first", file=sys.stderr)
        return 2

    copy = args.data.with_name(f"{args.data.name}-profile")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(args.data, copy)
    done = {path.name for path in (copy / "landing" / "streams").glob("*.parquet")}
    new = [path for path in sorted(args.pool.glob("*.parquet")) if path.name not in done]
    new = new[: args.files]

    os.environ["LOG_LEVEL"] = "debug"
    transformer = Transformer(copy, args.memory_limit)
    try:
        transformer.wait_for("transformer_started", 1, timeout=120)
        for count, path in enumerate(new, 1):
            link_into([path], copy)
            transformer.wait_for("batch_processed", count, timeout=300)
            transformer.wait_for("warehouse_checkpointed", count, timeout=120)
            time.sleep(0.2)
    finally:
        transformer.stop()

    steps: dict[str, list[int]] = defaultdict(list)
    batches = transformer.events("batch_processed")[-len(new) :]
    for event in batches:
        for key in ("stage_ms", "dbt_ms", "export_ms", "duration_ms"):
            steps[f"batch: {key.removesuffix('_ms')}"].append(event[key])
    for event in transformer.events("dbt_invoked")[-len(new) :]:
        for node, ms in event.get("node_ms", {}).items():
            steps[f"dbt: {node}"].append(ms)
    for event in transformer.events("model_exported")[-len(new) * 8 :]:
        steps[f"export: {event['model']}"].append(event["duration_ms"])
    for event in transformer.events("warehouse_checkpointed")[-len(new) :]:
        steps["after the batch: checkpoint"].append(event["duration_ms"])

    print(f"{len(new)} snapshots on {args.data.name}: median ms per snapshot")
    for name, values in sorted(steps.items(), key=lambda item: -statistics.median(item[1])):
        print(f"{statistics.median(values):8.0f}  {name}")
    shutil.rmtree(copy, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
