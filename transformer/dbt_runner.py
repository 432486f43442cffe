"""dbt inside the long-lived worker: parsed once, run by dbtRunner, logged through structlog."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("dbt")

DEFAULT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt"

# dbt's own levels, mapped onto ours: its info lines are per model, which for us is
# the chatter inside a unit of work (debug); warnings and errors keep their level.
_LEVELS = {"error": "error", "warn": "warning", "info": "debug"}


@dataclass(frozen=True)
class ExportSpec:
    """How one model is written to reporting/, from its `meta.export` in the dbt project."""

    model: str
    relation: str
    scope: str  # snapshot | day | all
    partition_by: str | None = None
    file_per: str | None = None


@dataclass
class DbtOutcome:
    """What one dbt invocation did."""

    success: bool
    duration_ms: int
    failed_tests: list[str] = field(default_factory=list)  # data tests that found rows
    failed_models: list[str] = field(default_factory=list)  # nodes that errored
    messages: list[str] = field(default_factory=list)
    changed_marts: bool = False  # an incremental model ran: the marts may hold batch rows
    node_ms: dict[str, int] = field(default_factory=dict)  # time each model and test took

    @property
    def data_problem(self) -> bool:
        """A test on the batch's data failed (the input is bad, not the warehouse)."""
        return bool(self.failed_tests) and not self.failed_models

    @property
    def out_of_memory(self) -> bool:
        """A model ran out of DUCKDB_MEMORY_LIMIT (the batch is too big for it)."""
        return any("Out of Memory" in message for message in self.messages)


def _on_event(event: Any) -> None:
    level = _LEVELS.get(event.info.level)
    if level is None:
        return
    message = event.info.msg
    if level == "debug" and not logging.getLogger("dbt").isEnabledFor(logging.DEBUG):
        return
    getattr(log, level)("dbt_event", dbt_event=event.info.name, msg=str(message)[:2000])


class DbtProject:
    """The dbt project, parsed once; every run reuses the parsed manifest."""

    def __init__(self, data_dir: Path, project_dir: Path | None = None) -> None:
        self.project_dir = (
            project_dir or Path(os.environ.get("DBT_PROJECT_DIR") or DEFAULT_PROJECT_DIR)
        ).resolve()
        self.profiles_dir = Path(os.environ.get("DBT_PROFILES_DIR") or self.project_dir).resolve()
        self.state_dir = (data_dir / "state" / "dbt").resolve()
        # dbt's profile reads DATA_DIR; make it absolute so the working folder never matters.
        os.environ["DATA_DIR"] = str(data_dir.resolve())
        self._manifest: Any = None

    def _args(self, command: str, *extra: str) -> list[str]:
        return [
            command,
            "--project-dir",
            str(self.project_dir),
            "--profiles-dir",
            str(self.profiles_dir),
            "--target-path",
            str(self.state_dir / "target"),
            "--log-path",
            str(self.state_dir / "logs"),
            "--log-level",
            "none",
            "--log-level-file",
            "none",
            "--no-use-colors",
            "--no-send-anonymous-usage-stats",
            *extra,
        ]

    def parse(self) -> None:
        """Parse the project once; later runs skip parsing entirely."""
        from dbt.cli.main import dbtRunner

        started = time.monotonic()
        result = dbtRunner(callbacks=[_on_event]).invoke(self._args("parse"))
        if not result.success or result.result is None:
            raise RuntimeError(f"dbt could not parse {self.project_dir}: {result.exception}")
        self._manifest = result.result
        log.info("dbt_parsed", duration_ms=int((time.monotonic() - started) * 1000))

    def invoke(self, command: str, *extra: str) -> DbtOutcome:
        """Run a dbt command in this process on the parsed manifest."""
        from dbt.cli.main import dbtRunner

        if self._manifest is None:
            self.parse()
        started = time.monotonic()
        try:
            result = dbtRunner(manifest=self._manifest, callbacks=[_on_event]).invoke(
                self._args(command, "--no-write-json", *extra)
            )
        finally:
            _close_dbt_connections()
        outcome = DbtOutcome(
            success=bool(result.success),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        if result.exception is not None:
            outcome.messages.append(f"{type(result.exception).__name__}: {result.exception}")
        for node_result in getattr(result.result, "results", None) or []:
            status = str(node_result.status)
            node = node_result.node
            outcome.node_ms[node.name] = int((node_result.execution_time or 0) * 1000)
            if status in {"success", "error"} and node.config.materialized == "incremental":
                # An incremental model that ran (even one that then failed) may have
                # replaced rows: the caller takes the batch's snapshots back out.
                outcome.changed_marts = True
            if status not in {"error", "fail"}:
                continue
            # A test that *fails* found bad rows; one that errors (like a model that
            # errors) could not run, which says nothing about the data.
            if node.resource_type == "test" and status == "fail":
                outcome.failed_tests.append(node.name)
            else:
                outcome.failed_models.append(node.name)
            outcome.messages.append(f"{node.name}: {node_result.message}")
        log.debug(
            "dbt_invoked",
            command=command,
            success=outcome.success,
            duration_ms=outcome.duration_ms,
            node_ms=outcome.node_ms,
        )
        return outcome

    def build_batch(self) -> DbtOutcome:
        """Every model, plus the tests that look at the batch only (`selectors.yml`)."""
        # dbt's default (eager) indirect selection adds every test of a selected model,
        # which brings back the whole-history mart tests the selector leaves out; with
        # `empty` only the tests the selector names run, and a batch costs what it holds.
        return self.invoke("build", "--selector", "batch", "--indirect-selection", "empty")

    def exports(self) -> list[ExportSpec]:
        """The models that carry `meta.export`, in dependency order."""
        if self._manifest is None:
            self.parse()
        specs = []
        for node in self._manifest.nodes.values():
            if node.resource_type != "model":
                continue
            export = (node.config.meta or {}).get("export") or node.meta.get("export")
            if not export:
                continue
            specs.append(
                ExportSpec(
                    model=node.name,
                    relation=node.relation_name,
                    scope=export.get("scope", "all"),
                    partition_by=export.get("partition_by"),
                    file_per=export.get("file_per"),
                )
            )
        return sorted(specs, key=lambda spec: spec.model)


def _close_dbt_connections() -> None:
    # dbt-duckdb keeps its DuckDB environment (and so the database file) open between
    # invocations unless told otherwise; the profile sets keep_open: false, and this
    # drops the cached environment too so nothing outlives the run.
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        environment.close()
    DuckDBConnectionManager.close_all_connections()
