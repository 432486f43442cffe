"""compose.yml and .env.example, checked without a Docker engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.deploy import files

CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def run_compose_config(compose: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Compose needs the env_file to exist: give it a project folder with .env.example as .env.
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "compose.yml", project / "compose.yml")
    shutil.copy(REPO / ".env.example", project / ".env")
    (project / "data").mkdir()
    return subprocess.run(
        [*compose, "--profile", "docs", "config", "--quiet"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", REPO / "compose.yml"],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text(
        (REPO / "compose.yml").read_text().replace("restart:", "restrat:"), encoding="utf-8"
    )

    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", broken],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert "restrat" in result.stdout


def test_compose_v1_reads_the_file(tmp_path: Path) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip(
            "docker-compose is not installed (Debian: apt-get install docker-compose); "
            "the compose-spec schema check covers the file"
        )

    result = run_compose_config(["docker-compose"], tmp_path)

    assert result.returncode == 0, result.stderr


def test_compose_v2_reads_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("the Docker Compose v2 plugin (`docker compose`) is not installed")

    result = run_compose_config([docker, "compose"], tmp_path)

    assert result.returncode == 0, result.stderr


def test_both_services_share_one_image_and_the_data_folder() -> None:
    services = files.compose()["services"]

    for name in files.PIPELINE_SERVICES:
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["image"] == services["extractor"]["image"]
        assert "./data:/data" in service["volumes"]
        assert service["environment"]["DATA_DIR"] == "/data"
        assert service["env_file"] == ".env"
        assert service["restart"] == "unless-stopped"


def test_services_run_their_twitch_bi_commands() -> None:
    services = files.compose()["services"]
    [entrypoint] = [files.dockerfile_stages()[-1].exec_form("ENTRYPOINT")]

    assert entrypoint == ["twitch-bi"]
    assert services["extractor"]["command"] == ["schedule"]
    assert services["transformer"]["command"] == ["watch"]
    for name in files.PIPELINE_SERVICES:
        assert files.is_subcommand(services[name]["command"])


def test_each_service_checks_its_own_health_with_an_existing_command() -> None:
    services = files.compose()["services"]

    for name in files.PIPELINE_SERVICES:
        check = services[name]["healthcheck"]
        assert check["test"] == ["CMD", "twitch-bi", "status", "--check", name]
        assert files.is_subcommand(check["test"][2:])
        assert files.parse_duration(check["timeout"]) < files.parse_duration(check["interval"])
        # The first heartbeat or crawl record comes after start-up work: give it room.
        assert files.parse_duration(check["start_period"]) >= 60


def test_stop_grace_periods_cover_a_clean_stop() -> None:
    services = files.compose()["services"]

    # The extractor stops a crawl within seconds; the transformer finishes its batch, which
    # its own contract bounds at 30 s. Docker's default of 10 s is too short for either.
    assert files.parse_duration(services["extractor"]["stop_grace_period"]) >= 30
    assert files.parse_duration(services["transformer"]["stop_grace_period"]) >= 60


def test_logs_are_rotated() -> None:
    for service in files.compose()["services"].values():
        logging = service["logging"]
        assert logging["driver"] == "json-file"
        assert logging["options"]["max-size"]
        assert int(logging["options"]["max-file"]) >= 2


def test_docs_site_is_optional_and_reachable_from_this_machine_only() -> None:
    docs = files.compose()["services"]["docs"]

    assert docs["profiles"] == ["docs"]
    [port] = docs["ports"]
    assert port.startswith("127.0.0.1:")
    assert docs["volumes"] == ["./data:/data:ro"]
    assert "/data/docs" in docs["entrypoint"]
    assert "env_file" not in docs  # a static site needs none of the secrets


def test_env_example_documents_every_design_variable() -> None:
    example = files.env_example()

    for name in files.DESIGN_VARIABLES:
        assert name in example.values, f"{name} is missing from .env.example"
        assert example.comments[name], f"{name} has no comment above it in .env.example"


def test_env_example_covers_every_variable_the_code_reads() -> None:
    used = files.env_used_by_code()
    image = files.dockerfile_stages()[-1].env()
    example = files.env_example()

    # What the image or the code itself sets is not the user's to set.
    undocumented = used.read - example.documented - set(image) - used.set_by_code
    assert not undocumented, f"add to .env.example, with a comment: {sorted(undocumented)}"
    assert "TWITCH_CLIENT_SECRET" in used.read  # the scan does find what settings.py reads


def test_env_example_holds_nothing_unused() -> None:
    used = files.env_used_by_code()

    stale = set(files.env_example().documented) - used.read - files.compose_interpolations()
    assert not stale, f"in .env.example but read by nothing: {sorted(stale)}"


def test_readme_configuration_table_lists_every_variable() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration") : readme.index("## Operations")]

    for name in files.env_example().documented:
        assert f"`{name}`" in table, f"{name} is missing from the README's configuration table"


def test_compose_interpolations_are_documented_for_plain_compose_users() -> None:
    example = files.env_example()

    for name in files.compose_interpolations():
        assert name in example.documented
        assert example.comments[name]


def test_real_env_file_is_never_committed() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")

    result = subprocess.run(["git", "check-ignore", "--quiet", ".env"], cwd=REPO)

    assert result.returncode == 0, ".env must be git-ignored: it holds the secrets"
