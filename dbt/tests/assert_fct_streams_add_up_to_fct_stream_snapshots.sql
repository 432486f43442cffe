-- Every (day, channel, category) of fct_streams holds exactly the sums of its
-- stream snapshots: returns the rows where they differ.

with

from_snapshots as (

    select
        snapshot_date as stream_date,
        user_id,
        game_id,
        count(*) as snapshot_count,
        sum(viewer_seconds) as viewer_seconds,
        sum(weight_seconds) as streamed_seconds,
        max(viewer_count) as peak_viewers

    from {{ ref('fct_stream_snapshots') }}
    group by snapshot_date, user_id, game_id

),

streams as (

    select * from {{ ref('fct_streams') }}

),

compared as (

    select
        from_snapshots.stream_date,
        from_snapshots.user_id,
        from_snapshots.game_id,
        from_snapshots.viewer_seconds as expected_viewer_seconds,
        streams.viewer_seconds

    from from_snapshots
    full outer join streams
        on
            from_snapshots.stream_date = streams.stream_date
            and from_snapshots.user_id = streams.user_id
            and from_snapshots.game_id is not distinct from streams.game_id
    where
        from_snapshots.viewer_seconds is distinct from streams.viewer_seconds
        or from_snapshots.streamed_seconds
        is distinct from streams.streamed_seconds
        or from_snapshots.snapshot_count is distinct from streams.snapshot_count
        or from_snapshots.peak_viewers is distinct from streams.peak_viewers

)

select * from compared
