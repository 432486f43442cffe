"""What every test's `twitch-bi` subprocess shares: its JSON log lines, read as they come."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any


class JsonLinesProcess:
    """A subprocess whose structured log is read back; subclasses say where it is kept."""

    popen: subprocess.Popen[bytes]

    def output(self) -> str:
        """The text holding the JSON lines written so far."""
        raise NotImplementedError

    def describe(self) -> str:
        """What to show when an awaited event never comes."""
        return self.output()[-4000:]

    def records(self) -> list[dict[str, Any]]:
        """Every complete line that is a JSON object (a line being written is skipped)."""
        found = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record.get("event") == name]

    def wait_for_event(
        self, name: str, timeout: float = 60, count: int = 1
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {count}x {name!r} within {timeout} s:\n{self.describe()}")
