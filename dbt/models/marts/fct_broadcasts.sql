{{
    config(
        incremental_strategy='upsert_keys',
        unique_key='stream_id',
        alive_column='last_seen_at',
        prune_column='last_seen_at',
        prune_from='first_seen_at',
        prune_to_scope=true,
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}
-- depends_on: {{ ref('fct_stream_snapshots') }}

{#
    Incremental by key. The batch touches a broadcast when one of its snapshots saw
    it, or when the broadcast as it was spanned one of its snapshots. Touched
    broadcasts are computed again from their int_stream_days rows. Twitch ends a
    broadcast after 48 hours, so those rows lie within `broadcast_max_hours` of the
    batch's snapshots and only those days are read.
#}

{%- set reach_hours = var('broadcast_max_hours') | int -%}

with

stream_days as (

    select * from {{ ref('int_stream_days') }}

),

{% if is_incremental() %}

{%- set bounds = batch_scope_bounds() %}

scope as (

    select * from {{ ref('int_batch_scope') }}

),

touched as (

    select stream_snapshots.stream_id
    from {{ ref('fct_stream_snapshots') }} as stream_snapshots
    inner join scope
        on stream_snapshots.snapshot_at = scope.snapshot_at

    union

    select previous.stream_id
    from {{ this }} as previous
    inner join scope
        on
            previous.first_seen_at <= scope.snapshot_at
            and previous.last_seen_at >= scope.snapshot_at
    where previous.last_seen_at >= {{ bounds.first }}

),

changed_days as (

    select stream_days.*
    from stream_days
    inner join touched
        on stream_days.stream_id = touched.stream_id
    where
        stream_days.snapshot_date >= cast(
            {{ dbt.dateadd(
                'hour', -reach_hours,
                'cast(' ~ bounds.first ~ ' as ' ~ dbt.type_timestamp() ~ ')'
            ) }} as date
        )
        and stream_days.snapshot_date <= cast(
            {{ dbt.dateadd(
                'hour', reach_hours,
                'cast(' ~ bounds.last ~ ' as ' ~ dbt.type_timestamp() ~ ')'
            ) }} as date
        )

),

{% else %}

changed_days as (

    select * from stream_days

),

{% endif %}

categories as (

    -- per broadcast and category (none too): the one read of int_stream_days
    select
        stream_id,
        game_id,
        {{ latest('game_name', 'last_seen_at') }} as game_name,
        {{ latest('user_id', 'last_seen_at') }} as user_id,
        {{ latest('user_login', 'last_seen_at') }} as user_login,
        {{ latest('language', 'last_seen_at') }} as language,
        min(started_at) as started_at,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        sum(snapshot_count) as snapshot_count,
        sum(viewer_seconds) as viewer_seconds,
        sum(streamed_seconds) as streamed_seconds,
        max(peak_viewers) as peak_viewers

    from changed_days
    group by stream_id, game_id

),

totals as (

    select
        stream_id,
        {{ latest('user_id', 'last_seen_at') }} as user_id,
        {{ latest('user_login', 'last_seen_at') }} as user_login,
        {{ latest('language', 'last_seen_at') }} as language,
        min(started_at) as started_at,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        cast(sum(snapshot_count) as {{ dbt.type_bigint() }}) as snapshot_count,
        cast(sum(viewer_seconds) as {{ dbt.type_bigint() }}) as viewer_seconds,
        cast(
            sum(streamed_seconds) as {{ dbt.type_bigint() }}
        ) as streamed_seconds,
        max(peak_viewers) as peak_viewers

    from categories
    group by stream_id

),

played as (

    select
        stream_id,
        count(*) as game_count,
        {{ dbt.listagg(
            'coalesce(game_name, game_id)', "' | '", 'order by first_seen_at'
        ) }} as game_names

    from categories
    where game_id is not null
    group by stream_id

),

{% if is_incremental() %}

with_vanished as (

    -- touched broadcasts with nothing left become tombstones
    select
        touched.stream_id,
        totals.user_id,
        totals.user_login,
        totals.language,
        totals.started_at,
        totals.first_seen_at,
        totals.last_seen_at,
        totals.snapshot_count,
        totals.viewer_seconds,
        totals.streamed_seconds,
        totals.peak_viewers

    from touched
    left join totals
        on touched.stream_id = totals.stream_id

),

{% else %}

with_vanished as (

    select * from totals

),

{% endif %}

final as (

    select
        with_vanished.stream_id,
        with_vanished.user_id,
        with_vanished.user_login,
        with_vanished.language,
        with_vanished.started_at,
        with_vanished.first_seen_at,
        with_vanished.last_seen_at,
        cast(with_vanished.last_seen_at as date) as last_seen_date,
        {{ dbt.datediff(
            'with_vanished.started_at', 'with_vanished.last_seen_at', 'second'
        ) }} as duration_seconds,
        coalesce(played.game_count, 0) as game_count,
        played.game_names,
        with_vanished.snapshot_count,
        with_vanished.viewer_seconds,
        with_vanished.streamed_seconds,
        with_vanished.viewer_seconds / 3600.0 as hours_watched,
        with_vanished.streamed_seconds / 3600.0 as hours_streamed,
        with_vanished.viewer_seconds * 1.0
        / nullif(with_vanished.streamed_seconds, 0) as avg_viewers,
        with_vanished.peak_viewers

    from with_vanished
    left join played
        on with_vanished.stream_id = played.stream_id

)

select * from final
