-- Every broadcast holds exactly the sums of its stream snapshots, over every
-- day it spans: returns the broadcasts where not.

with

from_snapshots as (

    select
        stream_id,
        count(*) as snapshot_count,
        sum(viewer_seconds) as viewer_seconds,
        sum(weight_seconds) as streamed_seconds,
        min(snapshot_at) as first_seen_at,
        max(snapshot_at) as last_seen_at

    from {{ ref('fct_stream_snapshots') }}
    group by stream_id

),

broadcasts as (

    select * from {{ ref('fct_broadcasts') }}

),

compared as (

    select
        from_snapshots.stream_id,
        from_snapshots.viewer_seconds as expected_viewer_seconds,
        broadcasts.viewer_seconds

    from from_snapshots
    full outer join broadcasts
        on from_snapshots.stream_id = broadcasts.stream_id
    where
        from_snapshots.viewer_seconds is distinct from broadcasts.viewer_seconds
        or from_snapshots.streamed_seconds
        is distinct from broadcasts.streamed_seconds
        or from_snapshots.snapshot_count
        is distinct from broadcasts.snapshot_count
        or from_snapshots.first_seen_at
        is distinct from broadcasts.first_seen_at
        or from_snapshots.last_seen_at is distinct from broadcasts.last_seen_at

)

select * from compared
