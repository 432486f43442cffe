{#
    What a model needs to know about the batch before it writes its SQL. Both macros
    query `int_batch_scope`, which dbt has built earlier in the same run.
#}

{% macro batch_scope_bounds() %}
    {#-
        The first and last snapshot time of the batch scope, as SQL literals, so that
        models can filter on them and the warehouse can skip the storage blocks outside.
    -#}
{%- set query -%}
        select
            cast(min(snapshot_at) as {{ dbt.type_string() }}) as first_at,
            cast(max(snapshot_at) as {{ dbt.type_string() }}) as last_at
        from {{ ref('int_batch_scope') }}
{%- endset -%}
    {%- set bounds = {'first': "'1970-01-01 00:00:00+00'",
                      'last': "'1970-01-01 00:00:00+00'"} -%}
{%- if execute -%}
        {%- set row = run_query(query).rows[0] -%}
        {%- if row[0] is not none -%}
            {%- do bounds.update({'first': "'" ~ row[0] ~ "'",
                                  'last': "'" ~ row[1] ~ "'"}) -%}
        {%- endif -%}
    {%- endif -%}
{{ return(bounds) }}
{% endmacro %}


{% macro batch_extends(relation, column) %}
    {#-
        Whether the batch only adds snapshots after everything `relation` holds: every
        snapshot of the scope is loaded and later than the greatest `column` there.
        Then a mart that keeps only first, last and latest values can merge the new
        rows into its old ones; any other batch recomputes what it touched.
    -#}
{%- set query -%}
        select count(*) as blocking
        from {{ ref('int_batch_scope') }}
        where not (
            change_type = 'loaded'
            and snapshot_at > coalesce(
                (select max({{ column }}) from {{ relation }}),
                cast('1970-01-01 00:00:00+00' as {{ dbt.type_timestamp() }})
            )
        )
{%- endset -%}
{%- set extends = true -%}
{%- if execute -%}
        {%- set extends = run_query(query).rows[0][0] == 0 -%}
    {%- endif -%}
{{ return(extends) }}
{% endmacro %}
