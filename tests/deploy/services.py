"""The two compose services as local processes: compose's environment, command and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.deploy import files
from tests.processes import JsonLinesProcess
from twitch_bi.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorServer

TWITCH_BI = Path(sys.executable).with_name("twitch-bi")


def compose_env(
    service: str, data_dir: Path, emulator: EmulatorServer | None = None, **overrides: str
) -> dict[str, str]:
    """What compose gives `service`: the image's ENV, then .env, then `environment:`.

    .env.example stands for .env; ./data is `data_dir`; the emulator stands for Twitch.
    The image's paths (PATH, HOME, /app/dbt) have no meaning here and are left out.
    """
    spec = files.compose()["services"][service]
    assert spec["env_file"] == ".env"
    image = {
        key: value
        for key, value in files.dockerfile_stages()[-1].env().items()
        if key != "PATH" and not value.startswith("/")
    }
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **image}
    env.update(files.env_example().values)
    env.update({key: str(value) for key, value in spec.get("environment", {}).items()})
    env = {key: files.host_path(value, spec, data_dir) for key, value in env.items()}
    if emulator is not None:
        env.update(
            TWITCH_API_BASE_URL=emulator.api_base_url,
            TWITCH_TOKEN_URL=emulator.token_url,
            TWITCH_CLIENT_ID=DEFAULT_CLIENT_ID,
            TWITCH_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        )
    env.update(overrides)
    return env


def container_command(service: str) -> list[str]:
    """The image's ENTRYPOINT plus the service's `command:`, with twitch-bi from this venv."""
    entrypoint = files.dockerfile_stages()[-1].exec_form("ENTRYPOINT")
    command = [*entrypoint, *files.compose()["services"][service]["command"]]
    return [str(TWITCH_BI) if word == "twitch-bi" else word for word in command]


def healthcheck(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the service's compose health check once, as Docker would inside the container."""
    test = files.compose()["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = [str(TWITCH_BI) if word == "twitch-bi" else word for word in test[1:]]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=20)


class ServiceProcess(JsonLinesProcess):
    """One service: started like its container, stdout and stderr kept apart in files."""

    def __init__(self, service: str, env: dict[str, str], workdir: Path, log_dir: Path) -> None:
        self.service = service
        self.workdir = workdir
        self.stdout_path = log_dir / f"{workdir.name}.stdout"
        self.stderr_path = log_dir / f"{workdir.name}.stderr"
        self._stdout = open(self.stdout_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._stderr = open(self.stderr_path, "w", encoding="utf-8")  # noqa: SIM115
        self.popen = subprocess.Popen(
            container_command(service),
            env=env,
            cwd=workdir,
            stdout=self._stdout,
            stderr=self._stderr,
        )

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    def output(self) -> str:
        return self.stdout()

    def describe(self) -> str:
        return f"{self.service}: stdout:\n{self.stdout()[-4000:]}\nstderr:\n{self.stderr()[-4000:]}"

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as `docker compose stop` sends, then wait up to `timeout` seconds."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._stdout.close()
        self._stderr.close()
