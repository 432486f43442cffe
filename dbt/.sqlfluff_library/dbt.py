"""Stand-ins for dbt's cross-database macros, so sqlfluff can render models without dbt.

Only used by the linter (`library_path` in .sqlfluff); dbt itself never reads this file.
Each renders what dbt-duckdb renders.
"""


def datediff(first: str, second: str, datepart: str) -> str:
    return f"date_diff('{datepart}', {first}, {second})"


def dateadd(datepart: str, interval: int, from_date_or_timestamp: str) -> str:
    return f"{from_date_or_timestamp} + (interval ({interval}) {datepart})"


def listagg(
    measure: str,
    delimiter_text: str = "','",
    order_by_clause: str | None = None,
    limit_num: int | None = None,
) -> str:
    order = f" {order_by_clause}" if order_by_clause else ""
    return f"string_agg({measure}, {delimiter_text}{order})"


def type_string() -> str:
    return "varchar"


def type_bigint() -> str:
    return "bigint"


def type_timestamp() -> str:
    return "timestamp"
