{#
    The ways this project's incremental models write a batch (see the overview,
    Incremental design). replace_scope and replace_keys are a delete and an insert
    in plain SQL; upsert_keys is their faster DuckDB variant for unique keys.
#}

{% macro get_incremental_replace_scope_sql(arg_dict) %}
{#-
    Replace whole snapshots (or days): delete every row whose `scope_column` holds a
    snapshot (`scope_grain: snapshot`) or a day (`day`) of the batch scope, then
    insert the model's rows. A snapshot or day that lost all its rows is emptied
    too, which delete+insert by unique key cannot do.
-#}
{%- set target = arg_dict['target_relation'] -%}
{%- set source = arg_dict['temp_relation'] -%}
{%- set column = config.require('scope_column') -%}
{%- set values = batch_scope_literals(config.get('scope_grain', 'snapshot')) -%}
{%- set columns = get_quoted_csv(
    arg_dict['dest_columns'] | map(attribute='name')
) -%}
{%- set scope = values | join(', ') if values else 'null' %}

delete from {{ target }}
where {{ column }} in ({{ scope }});

insert into {{ target }} ({{ columns }})
select {{ columns }}
from {{ source }}
{% endmacro %}


{% macro get_incremental_replace_keys_sql(arg_dict) %}
{#-
    Replace rows by key: delete every row whose `unique_key` (null-safe, so a null
    category is a key like any other) is among the model's rows, then insert the
    model's rows except tombstones, the rows whose `alive_column` is null: a model
    returns a tombstone for a key whose data is gone.

    `prune_column` bounds the delete from below by the least `prune_from` among the
    model's rows (a day, or a first sighting), and with `prune_to_scope` by the
    batch's first snapshot too (a row whose last sighting was removed may lie before
    the new first sighting), so the warehouse skips the storage blocks of older
    history: the delete costs the same on the thousandth day as on the first.
-#}
{%- set target = arg_dict['target_relation'] -%}
{%- set source = arg_dict['temp_relation'] -%}
{%- set keys = arg_dict['unique_key'] -%}
{%- set keys = [keys] if keys is string else keys -%}
{%- set prune_column = config.get('prune_column') -%}
{%- set columns = get_quoted_csv(
    arg_dict['dest_columns'] | map(attribute='name')
) -%}
{%- set pruned = 'true' -%}
{%- if prune_column and execute -%}
{%- set least_value = 'min(' ~ config.get('prune_from', prune_column) ~ ')' -%}
{%- if config.get('prune_to_scope') -%}
{%- set least_value = 'least(' ~ least_value
    ~ ', (select min(snapshot_at) from ' ~ ref('int_batch_scope') ~ '))' -%}
{%- endif -%}
{%- set bound = run_query(
    'select cast(' ~ least_value ~ ' as ' ~ dbt.type_string() ~ ') from ' ~ source
).rows[0][0] -%}
{#- no bound: the model returned no rows, so there is nothing to replace -#}
{%- set lower_bound = 'existing.' ~ prune_column ~ " >= '" ~ bound ~ "'" -%}
{%- set pruned = 'false' if bound is none else lower_bound -%}
{%- endif -%}
{%- set matches = [] -%}
{%- for key in keys -%}
{%- do matches.append(
    'existing.' ~ key ~ ' is not distinct from incoming.' ~ key
) -%}
{%- endfor %}

delete from {{ target }} as existing
where
    {{ pruned }}
    and exists (
        select 1
        from {{ source }} as incoming
        where {{ matches | join(' and ') }}
    );

insert into {{ target }} ({{ columns }})
select {{ columns }}
from {{ source }}
where {{ config.require('alive_column') }} is not null
{% endmacro %}


{% macro batch_scope_literals(grain) %}
{#-
    The batch scope's snapshot times (or days) as SQL literals, so the delete names
    them and the warehouse can skip the storage blocks that hold none of them.
-#}
{%- set column = 'snapshot_date' if grain == 'day' else 'snapshot_at' -%}
{%- set literals = [] -%}
{%- set query = 'select distinct cast(' ~ column ~ ' as '
    ~ dbt.type_string() ~ ') from ' ~ ref('int_batch_scope')
    ~ ' order by 1' -%}
{%- set rows = run_query(query).rows if execute else [] -%}
{%- for row in rows -%}
{%- do literals.append("'" ~ row[0] ~ "'") -%}
{%- endfor -%}
{{ return(literals) }}
{% endmacro %}


{% macro get_incremental_upsert_keys_sql(arg_dict) %}
{#-
    Like replace_keys, for a model whose `unique_key` is unique: rows whose key is
    here already are updated in place, new keys inserted and tombstones deleted. An
    update stores only the columns it changes, which costs far less than deleting
    and inserting whole rows when the warehouse next checkpoints.

    DuckDB-only (`rowid`): DuckDB updates fast only in storage order, so the changes
    are first sorted by the row they update. On another adapter use replace_keys.
-#}
{%- set target = arg_dict['target_relation'] -%}
{%- set source = arg_dict['temp_relation'] -%}
{%- set keys = arg_dict['unique_key'] -%}
{%- set keys = [keys] if keys is string else keys -%}
{%- set alive = config.require('alive_column') -%}
{%- set prune_column = config.get('prune_column') -%}
{%- set names = arg_dict['dest_columns'] | map(attribute='name') | list -%}
{%- set changes = source.identifier ~ '__changes' -%}
{%- set pruned = 'true' -%}
{%- if prune_column and execute -%}
{%- set least_value = 'min(' ~ config.get('prune_from', prune_column) ~ ')' -%}
{%- if config.get('prune_to_scope') -%}
{%- set least_value = 'least(' ~ least_value
    ~ ', (select min(snapshot_at) from ' ~ ref('int_batch_scope') ~ '))' -%}
{%- endif -%}
{%- set bound = run_query(
    'select cast(' ~ least_value ~ ' as ' ~ dbt.type_string() ~ ') from ' ~ source
).rows[0][0] -%}
{%- set lower_bound = 'existing.' ~ prune_column ~ " >= '" ~ bound ~ "'" -%}
{%- set pruned = 'false' if bound is none else lower_bound -%}
{%- endif -%}
{%- set matches = [] -%}
{%- for key in keys -%}
{%- do matches.append(
    'existing.' ~ key ~ ' is not distinct from incoming.' ~ key
) -%}
{%- endfor -%}
{%- set values = [] -%}
{%- set assignments = [] -%}
{%- for name in names if name not in keys -%}
{%- do values.append('incoming.' ~ name) -%}
{%- do assignments.append(name ~ ' = ' ~ changes ~ '.' ~ name) -%}
{%- endfor %}

create or replace temporary table {{ changes }} as
select
    existing.rowid as target_row,
    {{ values | join(', ') }}
from {{ target }} as existing
inner join {{ source }} as incoming
    on {{ matches | join(' and ') }}
where {{ pruned }} and incoming.{{ alive }} is not null
order by existing.rowid;

update {{ target }}
set {{ assignments | join(', ') }}
from {{ changes }}
where {{ target }}.rowid = {{ changes }}.target_row;

drop table {{ changes }};

delete from {{ target }} as existing
where
    {{ pruned }}
    and exists (
        select 1
        from {{ source }} as incoming
        where incoming.{{ alive }} is null and {{ matches | join(' and ') }}
    );

insert into {{ target }} ({{ get_quoted_csv(names) }})
select {{ get_quoted_csv(names) }}
from {{ source }} as incoming
where
    incoming.{{ alive }} is not null
    and not exists (
        select 1
        from {{ target }} as existing
        where {{ pruned }} and {{ matches | join(' and ') }}
    )
{% endmacro %}
