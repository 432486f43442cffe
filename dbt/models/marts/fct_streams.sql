{{
    config(
        incremental_strategy='upsert_keys',
        unique_key=['stream_date', 'user_id', 'game_id'],
        alive_column='last_seen_at',
        prune_column='stream_date',
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}
-- depends_on: {{ ref('fct_stream_snapshots') }}

{#
    Incremental by key. The batch touches a (day, channel, category) when one of its
    snapshots saw that channel in that category, or when the row as it was spanned one
    of its snapshots (which a reprocessed or removed snapshot may take away). Touched
    rows are computed again from int_stream_days; a touched row with nothing left
    comes back as a tombstone (null `last_seen_at`) and is deleted.
#}

with

stream_days as (

    select * from {{ ref('int_stream_days') }}

),

{% if is_incremental() %}

scope as (

    select * from {{ ref('int_batch_scope') }}

),

touched as (

    select distinct
        stream_snapshots.snapshot_date as stream_date,
        stream_snapshots.user_id,
        stream_snapshots.game_id

    from {{ ref('fct_stream_snapshots') }} as stream_snapshots
    inner join scope
        on stream_snapshots.snapshot_at = scope.snapshot_at

    union

    select
        previous.stream_date,
        previous.user_id,
        previous.game_id

    from {{ this }} as previous
    inner join scope
        on
            previous.stream_date = scope.snapshot_date
            and previous.first_seen_at <= scope.snapshot_at
            and previous.last_seen_at >= scope.snapshot_at

),

changed_days as (

    select stream_days.*
    from stream_days
    inner join touched
        on
            stream_days.snapshot_date = touched.stream_date
            and stream_days.user_id = touched.user_id
            and stream_days.game_id is not distinct from touched.game_id

),

{% else %}

changed_days as (

    select * from stream_days

),

{% endif %}

aggregated as (

    select
        snapshot_date as stream_date,
        user_id,
        game_id,
        {{ latest('user_login', 'last_seen_at') }} as user_login,
        {{ latest('game_name', 'last_seen_at') }} as game_name,
        cast(sum(snapshot_count) as {{ dbt.type_bigint() }}) as snapshot_count,
        cast(sum(viewer_seconds) as {{ dbt.type_bigint() }}) as viewer_seconds,
        cast(
            sum(streamed_seconds) as {{ dbt.type_bigint() }}
        ) as streamed_seconds,
        max(peak_viewers) as peak_viewers,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at

    from changed_days
    group by snapshot_date, user_id, game_id

),

{% if is_incremental() %}

with_vanished as (

    -- touched rows with nothing left become tombstones
    select
        touched.stream_date,
        touched.user_id,
        touched.game_id,
        aggregated.user_login,
        aggregated.game_name,
        aggregated.snapshot_count,
        aggregated.viewer_seconds,
        aggregated.streamed_seconds,
        aggregated.peak_viewers,
        aggregated.first_seen_at,
        aggregated.last_seen_at

    from touched
    left join aggregated
        on
            touched.stream_date = aggregated.stream_date
            and touched.user_id = aggregated.user_id
            and touched.game_id is not distinct from aggregated.game_id

),

{% else %}

with_vanished as (

    select * from aggregated

),

{% endif %}

final as (

    select
        stream_date,
        user_id,
        user_login,
        game_id,
        game_name,
        snapshot_count,
        viewer_seconds,
        streamed_seconds,
        viewer_seconds / 3600.0 as hours_watched,
        streamed_seconds / 3600.0 as hours_streamed,
        viewer_seconds * 1.0 / nullif(streamed_seconds, 0) as avg_viewers,
        peak_viewers,
        first_seen_at,
        last_seen_at

    from with_vanished

)

select * from final
