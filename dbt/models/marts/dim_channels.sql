{{
    config(
        incremental_strategy='upsert_keys',
        unique_key='user_id',
        alive_column='last_seen_at',
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}
-- depends_on: {{ ref('fct_stream_snapshots') }}

{#
    Incremental by key, two ways. A batch that only adds snapshots after every
    sighting this table holds merges them into the channels they saw: first and last
    take the extremes, the current login and name come from the later side. Any
    other batch computes the channels it touched again from all of int_stream_days
    (a channel whose last sighting went away comes back as a tombstone and is
    deleted).
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

{% if is_incremental() and batch_extends(this, 'last_seen_at') %}

sightings as (

    select
        user_id,
        user_login,
        user_name,
        language,
        snapshot_at as first_seen_at,
        snapshot_at as last_seen_at

    from batch_rows

    union all

    select
        previous.user_id,
        previous.user_login,
        previous.user_name,
        previous.language,
        previous.first_seen_at,
        previous.last_seen_at

    from {{ this }} as previous
    where previous.user_id in (select batch_rows.user_id from batch_rows)

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
        on
            previous.first_seen_at <= scope.snapshot_at
            and previous.last_seen_at >= scope.snapshot_at

),

sightings as (

    select
        touched.user_id,
        stream_days.user_login,
        stream_days.user_name,
        stream_days.language,
        stream_days.first_seen_at,
        stream_days.last_seen_at

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
        language,
        first_seen_at,
        last_seen_at

    from stream_days

),

{% endif %}

final as (

    select
        user_id,
        {{ latest('user_login', 'last_seen_at') }} as user_login,
        {{ latest('user_name', 'last_seen_at') }} as user_name,
        {{ latest('language', 'last_seen_at') }} as language,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at

    from sightings
    group by user_id

)

select * from final
