{% macro latest(column, order_by) %}
    {#-
        The value of `column` on the row with the greatest `order_by`, null included:
        "the login at the channel's last sighting". Keeping nulls makes it combine
        exactly over partial aggregates, which is what lets the marts be built
        incrementally from `int_stream_days`.
    -#}
{{- return(adapter.dispatch('latest')(column, order_by)) -}}
{% endmacro %}

{% macro duckdb__latest(column, order_by) -%}
{#- DuckDB-only: arg_max_null (Snowflake and Databricks spell it max_by). -#}
arg_max_null({{ column }}, {{ order_by }})
{%- endmacro %}

{% macro default__latest(column, order_by) -%}
    {{ exceptions.raise_compiler_error(
        "latest() has no implementation for this adapter: add one beside "
        ~ "duckdb__latest in macros/latest.sql"
    ) }}
{%- endmacro %}
