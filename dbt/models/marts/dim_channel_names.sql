{{
    config(
        incremental_strategy='replace_keys',
        unique_key='user_id',
        alive_column='valid_from',
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}
-- depends_on: {{ ref('int_snapshots') }}

{#
    Derived from the snapshots, never from the run time, so reprocessing old files
    rebuilds the same history. A channel's sightings (its int_stream_days rows) are
    put in time order; every change of login or display name opens a new row, valid
    until the next change. A channel that goes back to an earlier name opens a row
    again (seen at the grain of int_stream_days: a day of one broadcast).

    Incremental by channel. A batch that only adds snapshots after every one
    processed before (the usual case) appends its sightings to the rows the channel
    already has and rewrites only the channels whose name changed. Any other batch
    computes again, from all of int_stream_days, every channel seen on one of its
    days, and every channel with a row opened on one of its snapshots.
#}

{%- set others = '(select snapshot_at from ' ~ ref('int_snapshots')
    ~ ' where not is_in_batch)' -%}

with

stream_days as (

    select * from {{ ref('int_stream_days') }}

),

{% if is_incremental() and batch_extends(others, 'snapshot_at') %}

{%- set bounds = batch_scope_bounds() %}

earlier as (

    -- the rows as they stood before the batch's first snapshot
    select
        user_id,
        user_login,
        user_name,
        valid_from

    from {{ this }}
    where valid_from < {{ bounds.first }}

),

current_names as (

    -- a channel whose current row the batch opened has none here: it is touched
    select
        user_id,
        user_login,
        user_name

    from {{ this }}
    where is_current and valid_from < {{ bounds.first }}

),

new_sightings as (

    select
        user_id,
        user_login,
        user_name,
        first_seen_at

    from stream_days
    where
        snapshot_date >= cast(
            cast({{ bounds.first }} as {{ dbt.type_timestamp() }}) as date
        )
        and first_seen_at >= {{ bounds.first }}

),

touched as (

    -- a name other than the current one, or rows the batch replaces
    select new_sightings.user_id
    from new_sightings
    left join current_names
        on new_sightings.user_id = current_names.user_id
    where
        current_names.user_id is null
        or new_sightings.user_login
        is distinct from current_names.user_login
        or new_sightings.user_name
        is distinct from current_names.user_name

    union

    select previous.user_id
    from {{ this }} as previous
    where previous.valid_from >= {{ bounds.first }}

),

known as (

    select
        user_id,
        user_login,
        user_name,
        valid_from as first_seen_at

    from earlier

    union all

    select * from new_sightings

),

sightings as (

    -- a touched channel with nothing left comes back as a tombstone
    select
        touched.user_id,
        known.user_login,
        known.user_name,
        known.first_seen_at

    from touched
    left join known
        on touched.user_id = known.user_id

),

{% elif is_incremental() %}

scope as (

    select * from {{ ref('int_batch_scope') }}

),

touched as (

    select stream_days.user_id
    from stream_days
    inner join scope
        on stream_days.snapshot_date = scope.snapshot_date

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

sightings as (

    select
        user_id,
        user_login,
        user_name,
        first_seen_at

    from stream_days

),

{% endif %}

ordered as (

    select
        user_id,
        user_login,
        user_name,
        first_seen_at,
        lag(user_login) over (
            partition by user_id
            order by first_seen_at, user_login, user_name
        ) as previous_login,
        lag(user_name) over (
            partition by user_id
            order by first_seen_at, user_login, user_name
        ) as previous_name,
        row_number() over (
            partition by user_id
            order by first_seen_at, user_login, user_name
        ) as sighting_number

    from sightings

),

changes as (

    -- the sightings that open a row: the first, and each change of name
    select
        user_id,
        user_login,
        user_name,
        first_seen_at as valid_from

    from ordered
    where
        sighting_number = 1
        or user_login is distinct from previous_login
        or user_name is distinct from previous_name

),

final as (

    select
        user_id,
        user_login,
        user_name,
        valid_from,
        lead(valid_from) over (
            partition by user_id
            order by valid_from
        ) as valid_to

    from changes

)

select
    *,
    valid_to is null as is_current

from final
