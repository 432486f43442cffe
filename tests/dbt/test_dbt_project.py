"""The dbt project's own checks on a warehouse the worker built: data tests, unit tests,
sums that must agree, and what runs for every batch."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from dbt.cli.main import dbtRunner

from tests.conftest import REPO
from tests.dbt.conftest import land
from tests.dbt.test_incremental_equals_rebuild import TIMES, base_snapshot
from transformer.worker import Worker
from twitch_bi.settings import Settings

pytestmark = pytest.mark.slow

MODELS = {
    "stg_twitch__streams",
    "int_snapshots",
    "int_batch_scope",
    "int_stream_days",
    "int_game_snapshots",
    "fct_stream_snapshots",
    "fct_streams",
    "fct_broadcasts",
    "agg_games_daily",
    "agg_snapshots",
    "dim_channels",
    "dim_channel_names",
    "dim_games",
}


@pytest.fixture(scope="module")
def built(dbt_manifest: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """Snapshots over midnight with gaps, an outage, renames and a late arrival."""
    data_dir = tmp_path_factory.mktemp("project") / "data"
    worker = Worker(Settings(data_dir=data_dir))
    worker.dbt._manifest = dbt_manifest
    worker.specs = worker.dbt.exports()
    late = 3
    for batch in ([0, 1, 2], [4, 5], [6, 7], [late]):
        for index in batch:
            land(data_dir, base_snapshot(index))
        worker.process(worker.pending())
    assert worker.last_error is None
    assert len(TIMES) == 8
    yield worker
    worker.close()


def test_data_tests_unit_tests_and_sums_pass_on_a_built_warehouse(built: Worker) -> None:
    outcome = built.dbt.invoke("test")

    assert outcome.success, outcome.messages
    assert outcome.failed_tests == []


def test_every_batch_runs_every_model_and_only_the_batch_tests(built: Worker) -> None:
    result = dbtRunner(manifest=built.dbt._manifest).invoke(
        built.dbt._args("ls", "--selector", "batch", "--output", "name")
    )

    selected = set(result.result)
    assert selected - MODELS == {
        "not_null_stg_twitch__streams_user_id",
        "not_null_stg_twitch__streams_viewer_count",
    }
    assert selected >= MODELS


def test_make_docs_builds_the_site_with_the_overview(built: Worker) -> None:
    # Last in this module: it frees the warehouse, as when no transformer runs.
    built.close()
    data_dir = built.layout.root

    subprocess.run(
        ["make", "-s", "docs", f"DATA_DIR={data_dir}"], cwd=REPO, check=True, capture_output=True
    )

    page = (data_dir / "docs" / "index.html").read_text(encoding="utf-8")
    assert "Time weighting" in page
    assert "Incremental design" in page
    assert all(model in page for model in MODELS)
