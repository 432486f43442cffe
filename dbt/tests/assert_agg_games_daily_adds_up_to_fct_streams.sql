-- Hours watched and streamed by category and day equal the sums over the
-- channels of fct_streams, and the unique channels their count: returns the
-- rows where not.

with

from_streams as (

    select
        stream_date,
        game_id,
        count(*) as channel_count,
        sum(viewer_seconds) as viewer_seconds,
        sum(streamed_seconds) as streamed_seconds

    from {{ ref('fct_streams') }}
    group by stream_date, game_id

),

games_daily as (

    select * from {{ ref('agg_games_daily') }}

),

compared as (

    select
        from_streams.stream_date,
        from_streams.game_id,
        from_streams.viewer_seconds as expected_viewer_seconds,
        games_daily.viewer_seconds

    from from_streams
    full outer join games_daily
        on
            from_streams.stream_date = games_daily.stream_date
            and from_streams.game_id is not distinct from games_daily.game_id
    where
        from_streams.viewer_seconds is distinct from games_daily.viewer_seconds
        or from_streams.streamed_seconds
        is distinct from games_daily.streamed_seconds
        or from_streams.channel_count is distinct from games_daily.channel_count

)

select * from compared
