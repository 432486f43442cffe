"""Readers for the deploy files (compose.yml, Dockerfile, .env.example, Makefile) and the code."""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO
from twitch_bi.cli import main

PACKAGES = ("twitch_bi", "extractor", "transformer")
PIPELINE_SERVICES = ("extractor", "transformer")

# shared/DESIGN.md, "Environment": the variables every deployment may set.
DESIGN_VARIABLES = (
    "DATA_DIR",
    "TWITCH_CLIENT_ID",
    "TWITCH_CLIENT_SECRET",
    "TWITCH_API_BASE_URL",
    "TWITCH_TOKEN_URL",
    "EXTRACT_EVERY_MINUTES",
    "HEALTHCHECK_URL",
    "TRANSFORMER_HEALTHCHECK_URL",
    "WATCH_POLLING",
    "DUCKDB_MEMORY_LIMIT",
    "LOG_FORMAT",
    "LOG_LEVEL",
)

_ASSIGNMENT = re.compile(r"^(?P<commented>#\s*)?(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def compose() -> dict[str, Any]:
    """compose.yml as compose reads it (YAML merge keys resolved)."""
    value: dict[str, Any] = yaml.safe_load((REPO / "compose.yml").read_text(encoding="utf-8"))
    return value


def compose_interpolations() -> set[str]:
    """Every `${NAME...}` that compose fills in from the shell or .env."""
    text = (REPO / "compose.yml").read_text(encoding="utf-8")
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))


@dataclass
class EnvExample:
    """.env.example: active assignments, commented-out ones, and the comment above each."""

    values: dict[str, str] = field(default_factory=dict)
    commented: dict[str, str] = field(default_factory=dict)
    comments: dict[str, list[str]] = field(default_factory=dict)

    @property
    def documented(self) -> set[str]:
        return set(self.values) | set(self.commented)


def env_example() -> EnvExample:
    result = EnvExample()
    block: list[str] = []
    for raw in (REPO / ".env.example").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            block = []
            continue
        match = _ASSIGNMENT.match(line)
        if match is None:
            block.append(line.lstrip("#").strip())
            continue
        target = result.commented if match["commented"] else result.values
        target[match["key"]] = match["value"]
        result.comments[match["key"]] = [text for text in block if text]
    return result


@dataclass
class Stage:
    """One stage of the Dockerfile: its base, and its instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for word, rest in self.instructions if word == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for rest in self.all("ENV"):
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                values[key] = value
        return values

    def args(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for rest in self.all("ARG"):
            key, _, value = rest.partition("=")
            values[key.strip()] = value.strip()
        return values

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON (exec) form of ENTRYPOINT, CMD or HEALTHCHECK's CMD."""
        [rest] = self.all(keyword)[-1:]
        if keyword == "HEALTHCHECK":
            rest = rest[rest.index("CMD") + len("CMD") :]
        value: list[str] = yaml.safe_load(rest)
        return value


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile's stages, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # Docker drops comment lines, even inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""

    stages: list[Stage] = []
    for line in lines:
        if not line:
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        rest = " ".join(rest.split())
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append((word, rest))
    return stages


@dataclass(frozen=True)
class EnvUse:
    """Environment variables the code reads, and those it sets for itself."""

    read: frozenset[str]
    set_by_code: frozenset[str]


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def env_used_by_code() -> EnvUse:
    """Scan the packages (and the dbt project) for every environment variable they touch."""
    read: set[str] = set()
    set_by_code: set[str] = set()
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            read.update(_environment_table(tree))
            for node in ast.walk(tree):
                name = _env_name(node)
                if name is None:
                    continue
                sets = (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)) or (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "setdefault"
                )
                (set_by_code if sets else read).add(name)
    for path in sorted((REPO / "dbt").rglob("*")):
        if path.suffix in {".yml", ".sql"} and "target" not in path.parts:
            text = path.read_text(encoding="utf-8")
            read.update(re.findall(r"env_var\(\s*['\"]([A-Z][A-Z0-9_]*)['\"]", text))
    return EnvUse(read=frozenset(read), set_by_code=frozenset(set_by_code))


def _environment_table(tree: ast.Module) -> set[str]:
    """Names in a module-level `ENVIRONMENT = {"VARIABLE": ...}` table (read in a loop)."""
    names: set[str] = set()
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "ENVIRONMENT" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            names.update(
                key.value
                for key in node.value.keys
                if isinstance(key, ast.Constant) and isinstance(key.value, str)
            )
    return names


def _env_name(node: ast.AST) -> str | None:
    """The variable's name if `node` reads or writes the environment, else None."""
    argument: ast.expr | None = None
    if isinstance(node, ast.Subscript) and _is_environ(node.value):
        argument = node.slice
    elif isinstance(node, ast.Call) and node.args:
        func = node.func
        environ_call = isinstance(func, ast.Attribute) and (
            (_is_environ(func.value) and func.attr in {"get", "setdefault", "pop"})
            or func.attr == "getenv"
        )
        helper_call = isinstance(func, ast.Name) and (
            func.id == "getenv" or func.id.startswith("_env")
        )
        if environ_call or helper_call:
            argument = node.args[0]
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value if _NAME.match(argument.value) else None
    return None


def makefile_targets() -> dict[str, str]:
    """Targets that carry `## help`, with their help text, as `make help` shows them."""
    targets = {}
    for line in (REPO / "Makefile").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([a-zA-Z_-]+):.*## (.*)$", line)
        if match:
            targets[match[1]] = match[2]
    return targets


def makefile_phony() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    names: set[str] = set()
    for match in re.finditer(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE):
        names.update(match[1].split())
    return names


def parse_duration(value: str) -> float:
    """Seconds in a compose duration such as `30s`, `2m` or `1m30s`."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def host_path(container_path: str, service: dict[str, Any], data_dir: Path) -> str:
    """Where a path inside the container is on the host, with ./data replaced by `data_dir`."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if container_path == target or container_path.startswith(target + "/"):
            root = data_dir if source.rstrip("/") == "./data" else REPO / source
            return str(root) + container_path[len(target) :]
    return container_path


def is_subcommand(args: list[str]) -> bool:
    """True if `twitch-bi ARGS` parses: an existing subcommand with valid options."""
    try:
        main([*args, "--help"])
    except SystemExit as done:
        return done.code == 0
    return False
