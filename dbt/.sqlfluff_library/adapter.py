"""A stand-in for dbt's `adapter.dispatch`, so sqlfluff can render the project's macros.

Only used by the linter (`library_path` in .sqlfluff); it renders what the duckdb__
implementation of each dispatched macro renders.
"""

from collections.abc import Callable


def _latest(column: str, order_by: str) -> str:
    return f"arg_max_null({column}, {order_by})"


_DUCKDB = {"latest": _latest}


def dispatch(macro_name: str, macro_namespace: str | None = None) -> Callable[..., str]:
    return _DUCKDB[macro_name]
