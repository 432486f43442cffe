{{
    config(
        incremental_strategy='replace_scope',
        scope_column='stream_date',
        scope_grain='day',
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}

{#
    Incremental by day: every day of the batch scope is computed again from fct_streams
    (hours, channels, the top channel) and int_game_snapshots (peaks). Averages divide
    by the time the day's snapshots stand for, so a category absent from a snapshot
    counts as zero viewers then.
#}

with

streams as (

    select * from {{ ref('fct_streams') }}

),

game_snapshots as (

    select * from {{ ref('int_game_snapshots') }}

),

snapshots as (

    select * from {{ ref('int_snapshots') }}

),

{% if is_incremental() %}

scope_days as (

    select distinct snapshot_date from {{ ref('int_batch_scope') }}

),

day_streams as (

    select streams.*
    from streams
    inner join scope_days
        on streams.stream_date = scope_days.snapshot_date

),

day_game_snapshots as (

    select game_snapshots.*
    from game_snapshots
    inner join scope_days
        on game_snapshots.snapshot_date = scope_days.snapshot_date

),

{% else %}

day_streams as (

    select * from streams

),

day_game_snapshots as (

    select * from game_snapshots

),

{% endif %}

day_coverage as (

    select
        snapshot_date,
        sum(weight_seconds) as covered_seconds

    from snapshots
    group by snapshot_date

),

by_game as (

    select
        stream_date,
        game_id,
        count(*) as channel_count,
        cast(sum(viewer_seconds) as {{ dbt.type_bigint() }}) as viewer_seconds,
        cast(
            sum(streamed_seconds) as {{ dbt.type_bigint() }}
        ) as streamed_seconds,
        max(viewer_seconds) as top_viewer_seconds

    from day_streams
    group by stream_date, game_id

),

top_channels as (

    -- the channel with the most hours watched; the smallest user id breaks ties
    select
        day_streams.stream_date,
        day_streams.game_id,
        min(day_streams.user_id) as user_id

    from day_streams
    inner join by_game
        on
            day_streams.stream_date = by_game.stream_date
            and day_streams.game_id is not distinct from by_game.game_id
            and day_streams.viewer_seconds = by_game.top_viewer_seconds
    group by day_streams.stream_date, day_streams.game_id

),

peaks as (

    select
        snapshot_date,
        game_id,
        {{ latest('game_name', 'snapshot_at') }} as game_name,
        max(viewer_count) as peak_viewers,
        max(channel_count) as peak_channels

    from day_game_snapshots
    group by snapshot_date, game_id

),

final as (

    select
        by_game.stream_date,
        by_game.game_id,
        peaks.game_name,
        by_game.viewer_seconds,
        by_game.streamed_seconds,
        by_game.viewer_seconds / 3600.0 as hours_watched,
        by_game.streamed_seconds / 3600.0 as hours_streamed,
        by_game.viewer_seconds * 1.0
        / day_coverage.covered_seconds as avg_viewers,
        peaks.peak_viewers,
        by_game.streamed_seconds * 1.0
        / day_coverage.covered_seconds as avg_channels,
        peaks.peak_channels,
        by_game.channel_count,
        top_channels.user_id as top_user_id,
        top_streams.user_login as top_user_login,
        by_game.top_viewer_seconds / 3600.0 as top_hours_watched

    from by_game
    inner join peaks
        on
            by_game.stream_date = peaks.snapshot_date
            and by_game.game_id is not distinct from peaks.game_id
    inner join day_coverage
        on by_game.stream_date = day_coverage.snapshot_date
    inner join top_channels
        on
            by_game.stream_date = top_channels.stream_date
            and by_game.game_id is not distinct from top_channels.game_id
    inner join day_streams as top_streams
        on
            top_channels.stream_date = top_streams.stream_date
            and top_channels.user_id = top_streams.user_id
            and top_channels.game_id is not distinct from top_streams.game_id

)

select * from final
