"""The README's table of reporting tables names every model the transformer exports."""

from __future__ import annotations

import yaml

from tests.conftest import REPO


def exported_models() -> set[str]:
    names = set()
    for path in (REPO / "dbt" / "models").rglob("*.yml"):
        for model in yaml.safe_load(path.read_text(encoding="utf-8")).get("models", []):
            if "export" in model.get("config", {}).get("meta", {}):
                names.add(model["name"])
    return names


def test_every_exported_model_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reading the reporting tables", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {name for row in rows for name in row.split("|")[1].replace("`", "").split(", ")}
    assert exported_models() == {name.strip() for name in listed}
    assert len(exported_models()) == 8
