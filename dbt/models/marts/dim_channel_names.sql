{{
    config(
        incremental_strategy='replace_keys',
        unique_key='user_id',
        alive_column='valid_from',
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}
-- depends_on: {{ ref('fct_stream_snapshots') }}

{#
    Derived from the snapshots, never from the run time, so reprocessing old files
    rebuilds the same history. A name is valid from the first snapshot that saw the
    channel under it until the first sighting of its next name.

    Incremental by channel. A batch that only adds snapshots after every name this
    table holds writes only the channels it saw under a name they never had (the new
    name opens, the previous one closes); every other channel is left alone. Any
    other batch computes the names of the channels it touched again from all of
    int_stream_days: those its snapshots saw, and those with a name first seen on one
    of its snapshots.
#}

with

{% if is_incremental() %}

scope as (

    select * from {{ ref('int_batch_scope') }}

),

batch_rows as (

    select stream_snapshots.*
    from {{ ref('fct_stream_snapshots') }} as stream_snapshots
    inner join scope
        on stream_snapshots.snapshot_at = scope.snapshot_at

),

{% endif %}

{% if is_incremental() and batch_extends(this, 'valid_from') %}

new_names as (

    select
        batch_rows.user_id,
        batch_rows.user_login,
        batch_rows.user_name,
        min(batch_rows.snapshot_at) as first_seen_at

    from batch_rows
    where
        not exists (
            select 1
            from {{ this }} as previous
            where
                previous.user_id = batch_rows.user_id
                and previous.user_login
                is not distinct from batch_rows.user_login
                and previous.user_name
                is not distinct from batch_rows.user_name
        )
    group by batch_rows.user_id, batch_rows.user_login, batch_rows.user_name

),

sightings as (

    select
        user_id,
        user_login,
        user_name,
        first_seen_at

    from new_names

    union all

    select
        previous.user_id,
        previous.user_login,
        previous.user_name,
        previous.valid_from as first_seen_at

    from {{ this }} as previous
    where previous.user_id in (select new_names.user_id from new_names)

),

{% elif is_incremental() %}

stream_days as (

    select * from {{ ref('int_stream_days') }}

),

touched as (

    select user_id from batch_rows

    union

    select previous.user_id
    from {{ this }} as previous
    inner join scope
        on previous.valid_from = scope.snapshot_at

),

sightings as (

    select
        touched.user_id,
        stream_days.user_login,
        stream_days.user_name,
        stream_days.first_seen_at

    from touched
    left join stream_days
        on touched.user_id = stream_days.user_id

),

{% else %}

stream_days as (

    select * from {{ ref('int_stream_days') }}

),

sightings as (

    select
        user_id,
        user_login,
        user_name,
        first_seen_at

    from stream_days

),

{% endif %}

names as (

    select
        user_id,
        user_login,
        user_name,
        min(first_seen_at) as valid_from

    from sightings
    group by user_id, user_login, user_name

),

final as (

    select
        user_id,
        user_login,
        user_name,
        valid_from,
        lead(valid_from) over (
            partition by user_id
            order by valid_from, user_login, user_name
        ) as valid_to

    from names

)

select
    *,
    valid_to is null as is_current

from final
