"""State files: whole after every write, and readable like the data files beside them."""

from __future__ import annotations

import stat
from pathlib import Path

from twitch_bi.statefile import read_json, write_json


def test_write_json_replaces_the_file_and_leaves_it_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "state" / "x.error.json"
    write_json(path, {"reason": "first"})
    write_json(path, {"reason": "second", "rows": 3})

    assert read_json(path) == {"reason": "second", "rows": 3}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [entry.name for entry in path.parent.iterdir()] == ["x.error.json"]
    assert read_json(tmp_path / "missing.json") is None
