"""The Makefile's deploy targets, as dry runs: the commands they would give Compose."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.deploy import files

# The list; `docs` comes with the dbt docs site (issue 5).
REQUIRED_TARGETS = {
    "demo",
    "test",
    "lint",
    "up",
    "down",
    "logs",
    "ps",
    "status",
    "reprocess",
    "rebuild",
    "docs",
    "bench",
}
COMPOSE = "docker compose"


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args, f"COMPOSE={COMPOSE}"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def dry_run(*args: str) -> list[str]:
    """The recipe lines `make -n` prints, one per command."""
    result = make("-n", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def compose_commands(*args: str) -> list[list[str]]:
    """The Compose invocations of a dry run, each split as the shell would split it."""
    return [
        shlex.split(line)
        for line in dry_run(*args)
        if line.startswith(COMPOSE) or f" {COMPOSE} " in line
    ]


def test_help_lists_every_target_with_what_it_does() -> None:
    result = make("help")
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()}

    assert result.returncode == 0
    assert REQUIRED_TARGETS - listed <= {"docs"}
    assert files.makefile_phony() - {"help"} <= listed
    assert set(files.makefile_targets()) == listed


def test_up_builds_as_the_owner_of_the_data_folder() -> None:
    owner = (REPO / "data").stat()

    [command] = [line for line in dry_run("up") if "up --detach" in line]

    assert command == (
        f"HOST_UID={owner.st_uid} HOST_GID={owner.st_gid} {COMPOSE} up --detach --build"
    )


def test_up_without_env_file_says_what_to_do(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Makefile", project / "Makefile")
    for name in ("pyproject.toml", "requirements.lock", "requirements-dev.lock"):
        shutil.copy(REPO / name, project / name)

    result = subprocess.run(["make", "-C", str(project), "up"], capture_output=True, text=True)

    assert result.returncode != 0
    assert "cp .env.example .env" in result.stderr


def test_operations_run_twitch_bi_in_the_transformer_container() -> None:
    expected = {
        ("status",): ["status"],
        ("status", "JSON=1"): ["status", "--json"],
        ("reprocess", "FILE=streams_20260301T120000Z.parquet"): [
            "reprocess",
            "streams_20260301T120000Z.parquet",
        ],
        ("reprocess", "FILE=a.parquet b.parquet"): ["reprocess", "a.parquet", "b.parquet"],
        ("reprocess", "SINCE=2026-03-01"): ["reprocess", "--since", "2026-03-01"],
        ("rebuild",): ["rebuild"],
    }

    for args, command in expected.items():
        [line] = compose_commands(*args)
        prefix = [*COMPOSE.split(), "exec", "-T", "transformer", "twitch-bi"]
        assert line == prefix + command, args
        assert files.is_subcommand(command)


def test_reprocess_without_file_or_since_explains_itself() -> None:
    result = make("reprocess")

    assert result.returncode != 0
    assert "usage: make reprocess FILE=" in result.stderr


def test_logs_follow_both_services() -> None:
    script = "\n".join(dry_run("logs"))

    one = "\n".join(dry_run("logs", "SERVICE=extractor", "TAIL=10"))

    assert f"{COMPOSE} logs --follow --no-color --no-log-prefix --tail=50 " in script
    assert "| jq --unbuffered" in script
    assert f"{COMPOSE} logs --follow --no-color --no-log-prefix --tail=10 extractor" in one


@pytest.mark.parametrize("target", ["up", "down", "logs", "ps", "status", "rebuild", "serve-docs"])
def test_deploy_recipes_are_plain_posix_shell(target: str) -> None:
    script = "\n".join(dry_run(target))

    # /bin/sh is dash on Debian and bash in POSIX mode on macOS: parse with a POSIX shell.
    result = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


def test_logs_render_one_readable_line_per_event() -> None:
    jq = shutil.which("jq")
    if jq is None:
        pytest.skip("jq is not installed; `make logs` then shows the raw JSON lines")
    database = make("-pn").stdout
    [program] = [
        line.split(":= ", 1)[1] for line in database.splitlines() if line.startswith("LOG_JQ :=")
    ]
    event = {
        "timestamp": "2026-03-02T10:00:00.123456Z",
        "level": "info",
        "service": "extractor",
        "event": "snapshot_landed",
        "file": "streams_20260302T100000Z.parquet",
        "rows": 300,
    }
    lines = [json.dumps(event), "twitch-bi: TWITCH_CLIENT_ID must be set", '{"level": 5}']

    result = subprocess.run(
        [jq, "--raw-input", "--raw-output", program],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2026-03-02T10:00:00.123456Z INFO extractor snapshot_landed "
        "file=streams_20260302T100000Z.parquet rows=300",
        "twitch-bi: TWITCH_CLIENT_ID must be set",
        '{"level": 5}',
    ]
