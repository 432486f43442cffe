"""Stand-ins for dbt's cross-database macros, so sqlfluff can render models without dbt.

Only used by the linter (`library_path` in .sqlfluff); dbt itself never reads this file.
"""


def datediff(first: str, second: str, datepart: str) -> str:
    return f"date_diff('{datepart}', {first}, {second})"
