{#
    The two ways this project's incremental models write a batch (`docs/incremental.md`).
    Both are plain SQL (delete, then insert), so they port to any adapter as they are.
#}

{% macro get_incremental_replace_scope_sql(arg_dict) %}
    {#-
        Replace whole snapshots (or days): delete every row whose `scope_column` holds
        a snapshot (or day) of the batch scope, then insert the model's rows. A snapshot
        or day that lost all its rows is emptied too, which delete+insert by unique key
        cannot do.
    -#}
{%- set target = arg_dict['target_relation'] -%}
{%- set source = arg_dict['temp_relation'] -%}
{%- set column = config.require('scope_column') -%}
{%- set grain = config.get('scope_grain', 'snapshot') -%}
    {%- set columns = get_quoted_csv(
        arg_dict['dest_columns'] | map(attribute='name')
    ) -%}
{%- set values = batch_scope_literals(grain) -%}

{%- if values %}
    delete from {{ target }}
    where {{ column }} in ({{ values | join(', ') }});
    {% endif %}

    insert into {{ target }} ({{ columns }})
    select {{ columns }}
    from {{ source }}
{% endmacro %}


{% macro get_incremental_replace_keys_sql(arg_dict) %}
    {#-
        Replace rows by key: delete every row whose `unique_key` (null-safe, so a null
        category is a key like any other) is among the model's rows, then insert the
        model's rows except tombstones, the rows whose `alive_column` is null. A model
        returns a tombstone for a key whose data is gone.
    -#}
{%- set target = arg_dict['target_relation'] -%}
{%- set source = arg_dict['temp_relation'] -%}
{%- set keys = arg_dict['unique_key'] -%}
{%- set keys = [keys] if keys is string else keys -%}
{%- set alive = config.require('alive_column') -%}
    {%- set columns = get_quoted_csv(
        arg_dict['dest_columns'] | map(attribute='name')
    ) -%}

delete from {{ target }} as existing
    where exists (
        select 1
        from {{ source }} as incoming
        where
{%- for key in keys %}
{{ 'and ' if not loop.first }}existing.{{ key }}
            is not distinct from incoming.{{ key }}
{%- endfor %}
    );

    insert into {{ target }} ({{ columns }})
    select {{ columns }}
    from {{ source }}
    where {{ alive }} is not null
{% endmacro %}


{% macro batch_scope_literals(grain) %}
    {#-
        The batch scope's snapshot times (or days) as SQL literals, so the delete names
        them and the warehouse can skip the storage blocks that hold none of them.
    -#}
{%- set column = 'snapshot_date' if grain == 'day' else 'snapshot_at' -%}
{%- set query -%}
select distinct cast({{ column }} as {{ dbt.type_string() }}) as scope_value
        from {{ ref('int_batch_scope') }}
        order by 1
{%- endset -%}
{%- set literals = [] -%}
{%- if execute -%}
        {%- for row in run_query(query).rows -%}
            {%- do literals.append("'" ~ row[0] ~ "'") -%}
        {%- endfor -%}
    {%- endif -%}
{{ return(literals) }}
{% endmacro %}
