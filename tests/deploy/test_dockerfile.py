"""The Dockerfile and .dockerignore, checked without a Docker engine; the baked dbt parse, run."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.deploy import files
from tests.deploy.files import is_subcommand
from tests.deploy.services import ServiceProcess, compose_env


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    regex = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif pattern[index] == "*":
            regex, index = regex + "[^/]*", index + 1
        elif pattern[index] == "?":
            regex, index = regex + "[^/]", index + 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            regex, index = regex + pattern[index : end + 1], end + 1
        else:
            regex, index = regex + re.escape(pattern[index]), index + 1
    return re.compile(regex + r"\Z")


def sent_to_builder(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or a parent folder decides."""
    parents = ["/".join(path.split("/")[: depth + 1]) for depth in range(path.count("/") + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").strip("/"))
        if any(regex.match(parent) for parent in parents):
            excluded = not negated
    return not excluded


def build_parse() -> tuple[dict[str, str], list[str]]:
    """The environment and the arguments of the build stage's `dbt parse`."""
    [run] = [rest for rest in files.dockerfile_stages()[0].all("RUN") if "dbt parse" in rest]
    words = shlex.split(run.split("&&")[0])
    env = dict(word.split("=", 1) for word in words[: words.index("dbt")])
    return env, words[words.index("dbt") + 2 :]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_image_is_built_in_two_stages_on_python_3_11_slim() -> None:
    build, runtime = files.dockerfile_stages()

    assert build.base == runtime.base == "python:3.11-slim"
    assert build.name == "build"


def test_runtime_stage_installs_nothing_and_copies_only_the_results() -> None:
    runtime = files.dockerfile_stages()[-1]

    # Packages are installed in the build stage only, so no compiler or pip cache remains.
    for command in runtime.all("RUN"):
        assert not re.search(r"\b(apt-get|apt|pip|uv)\b", command), command
    assert runtime.all("COPY") == [
        "--from=build /opt/venv /opt/venv",
        "--from=build /app/dbt /app/dbt",
    ]


def test_dependencies_come_from_the_lock_as_wheels() -> None:
    [install, own] = [rest for rest in files.dockerfile_stages()[0].all("RUN") if "pip" in rest]

    assert install == "pip install --only-binary=:all: -r requirements.lock"
    assert own == "pip install --no-deps ."


def test_image_runs_as_the_numeric_uid_and_gid_compose_passes() -> None:
    runtime = files.dockerfile_stages()[-1]
    build_args = files.compose()["services"]["transformer"]["build"]["args"]

    assert runtime.all("USER") == ["${HOST_UID}:${HOST_GID}"]
    assert runtime.args() == {"HOST_UID": "1000", "HOST_GID": "1000"}
    assert set(build_args) == {"HOST_UID", "HOST_GID"}
    [users] = [rest for rest in runtime.all("RUN") if "useradd" in rest]
    assert '--uid "$HOST_UID"' in users and '--gid "$HOST_GID"' in users


def test_runtime_environment_suits_a_container() -> None:
    env = files.dockerfile_stages()[-1].env()

    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["LOG_FORMAT"] == "json"
    assert env["RUNTIME__DLTHUB_TELEMETRY"] == "false"
    assert env["DATA_DIR"] == files.compose()["services"]["transformer"]["environment"]["DATA_DIR"]
    # compose mounts the root read-only and a tmpfs for HOME: anything written there is lost.
    assert files.compose()["services"]["transformer"]["read_only"] is True
    assert env["HOME"] in files.compose()["services"]["transformer"]["tmpfs"]


def test_healthcheck_and_entrypoint_are_twitch_bi_commands() -> None:
    runtime = files.dockerfile_stages()[-1]

    entrypoint = runtime.exec_form("ENTRYPOINT")
    check = runtime.exec_form("HEALTHCHECK")
    assert entrypoint == ["twitch-bi"]
    assert check[0] == "twitch-bi"
    assert is_subcommand(check[1:])
    assert is_subcommand(runtime.exec_form("CMD"))


def test_dbt_parse_baked_at_build_is_what_the_transformer_reads() -> None:
    env, args = build_parse()
    runtime = files.dockerfile_stages()[-1].env()
    example = files.env_example().values
    compose_env_ = files.compose()["services"]["transformer"]["environment"]

    target = option(args, "--target-path")
    assert runtime["DBT_PARTIAL_PARSE_FILE_PATH"] == f"{target}/partial_parse.msgpack"
    assert target.startswith(option(args, "--project-dir"))
    assert runtime["DBT_PROJECT_DIR"] == option(args, "--project-dir")
    assert runtime["DBT_PROFILES_DIR"] == option(args, "--profiles-dir")
    # dbt reuses the parse only if the profile and the project's variables are the same as
    # at run time: the mount point, and the defaults a fresh .env has.
    assert env["DATA_DIR"] == compose_env_["DATA_DIR"]
    assert env["EXTRACT_EVERY_MINUTES"] == example["EXTRACT_EVERY_MINUTES"]
    assert env["DUCKDB_MEMORY_LIMIT"] == example["DUCKDB_MEMORY_LIMIT"]


def test_build_context_holds_the_code_and_never_the_data_or_secrets() -> None:
    patterns = dockerignore_patterns()
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.split()
    copied = ("pyproject.toml", "README.md", "requirements.lock", "twitch_bi/", "extractor/")
    needed = [path for path in tracked if path.startswith((*copied, "transformer/", "dbt/"))]

    assert needed or not tracked
    for path in [*needed, "twitch_bi/emulator/fixtures/SOURCES.md", "dbt/dbt_project.yml"]:
        assert sent_to_builder(path, patterns), path
    for path in [
        "data/landing/streams/streams_20260301T120000Z.parquet",
        "data/warehouse/twitch.duckdb",
        ".env",
        ".venv/bin/python",
        ".git/config",
        "dbt/target/manifest.json",
        "twitch_bi/__pycache__/cli.cpython-311.pyc",
        "tests/conftest.py",
    ]:
        assert not sent_to_builder(path, patterns), path


@pytest.mark.slow
def test_transformer_starts_from_the_dbt_parse_baked_into_the_image(
    tmp_path: Path, data_dir: Path, spawn_service: Callable[..., ServiceProcess]
) -> None:
    # Parse as the build stage does, with the paths of this machine in place of the image's.
    env, args = build_parse()
    baked = tmp_path / "baked"
    env["DATA_DIR"] = str(data_dir.resolve())
    args[args.index("--project-dir") + 1] = str(REPO / "dbt")
    args[args.index("--profiles-dir") + 1] = str(REPO / "dbt")
    args[args.index("--target-path") + 1] = str(baked)
    args[args.index("--log-path") + 1] = str(tmp_path / "dbt-logs")
    dbt = Path(sys.executable).with_name("dbt")
    subprocess.run([dbt, "parse", *args], env=env, check=True, capture_output=True)

    service_env = compose_env(
        "transformer",
        data_dir,
        DBT_PARTIAL_PARSE_FILE_PATH=str(baked / "partial_parse.msgpack"),
        LOG_LEVEL="debug",
    )
    watch = spawn_service("transformer", service_env)
    watch.wait_for_event("transformer_started")
    assert watch.stop() == 0

    dbt_events = {line.get("dbt_event") for line in watch.events("dbt_event")}
    # dbt reports at info level why it cannot reuse a parse (`UnableToPartialParse`), and
    # every invocation reports its version: the first is absent, the second proves we listen.
    assert "MainReportVersion" in dbt_events
    assert "UnableToPartialParse" not in dbt_events
