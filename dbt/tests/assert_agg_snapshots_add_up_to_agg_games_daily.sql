-- The platform's viewer-seconds per day (agg_snapshots) equal the sum over
-- categories (agg_games_daily): returns the days where not.

with

platform as (

    select
        snapshot_date,
        sum(viewer_seconds) as viewer_seconds

    from {{ ref('agg_snapshots') }}
    group by snapshot_date

),

games as (

    select
        stream_date,
        sum(viewer_seconds) as viewer_seconds

    from {{ ref('agg_games_daily') }}
    group by stream_date

),

compared as (

    select
        platform.snapshot_date,
        platform.viewer_seconds as expected_viewer_seconds,
        games.viewer_seconds

    from platform
    full outer join games
        on platform.snapshot_date = games.stream_date
    where platform.viewer_seconds is distinct from games.viewer_seconds

)

select * from compared
