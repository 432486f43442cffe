{{ config(unique_key='stream_date') }}

{#
    Incremental by day: every day the batch touches is rebuilt whole from the grain
    fact, so a late or replaced snapshot gives the same rows as a fresh run.
#}

with

batch_days as (

    select distinct snapshot_date from {{ ref('int_batch_scope') }}

),

stream_snapshots as (

    select stream_snapshots.*
    from {{ ref('fct_stream_snapshots') }} as stream_snapshots
    {% if is_incremental() %}
    inner join batch_days
        on stream_snapshots.snapshot_date = batch_days.snapshot_date
    {% endif %}

),

aggregated as (

    select
        snapshot_date as stream_date,
        user_id,
        game_id,
        -- DuckDB-only: arg_max picks the value at the day's latest snapshot.
        arg_max(user_login, snapshot_at) as user_login,
        arg_max(game_name, snapshot_at) as game_name,
        count(*) as snapshot_count,
        max(viewer_count) as peak_viewers,
        sum(viewer_seconds) as viewer_seconds,
        sum(weight_seconds) as streamed_seconds,
        min(snapshot_at) as first_seen_at,
        max(snapshot_at) as last_seen_at

    from stream_snapshots
    group by snapshot_date, user_id, game_id

),

final as (

    select
        stream_date,
        user_id,
        user_login,
        game_id,
        game_name,
        snapshot_count,
        viewer_seconds / 3600.0 as hours_watched,
        streamed_seconds / 3600.0 as hours_streamed,
        viewer_seconds * 1.0 / nullif(streamed_seconds, 0) as avg_viewers,
        peak_viewers,
        first_seen_at,
        last_seen_at

    from aggregated

)

select * from final
