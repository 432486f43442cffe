{#
    What the running batch changes, one row per snapshot:
    - loaded: a snapshot of the batch (new, or processed before and loaded again);
    - reweighted: the snapshot right after a loaded or removed one; its weight
      depends on its predecessor, so a late arrival changes it;
    - removed: a snapshot time no file holds any more; its rows go away.
    The incremental models rebuild these snapshots (and what depends on them) and
    nothing else; the exporter rewrites the reporting files they touch.
#}

with

snapshots as (

    select * from {{ ref('int_snapshots') }}

),

pending_removals as (

    select * from {{ source('ops', 'pending_removals') }}

),

removed as (

    select distinct pending_removals.snapshot_at
    from pending_removals
    left join snapshots
        on pending_removals.snapshot_at = snapshots.snapshot_at
    where snapshots.snapshot_at is null

),

loaded as (

    select snapshot_at
    from snapshots
    where is_in_batch

),

changed_points as (

    select snapshot_at from loaded
    union all
    select snapshot_at from removed

),

successors as (

    -- the first snapshot after each changed point
    select min(snapshots.snapshot_at) as snapshot_at
    from changed_points
    inner join snapshots
        on changed_points.snapshot_at < snapshots.snapshot_at
    group by changed_points.snapshot_at

),

reweighted as (

    select distinct successors.snapshot_at
    from successors
    left join loaded
        on successors.snapshot_at = loaded.snapshot_at
    where loaded.snapshot_at is null

),

scope as (

    select
        snapshot_at,
        'loaded' as change_type
    from loaded

    union all

    select
        snapshot_at,
        'reweighted' as change_type
    from reweighted

    union all

    select
        snapshot_at,
        'removed' as change_type
    from removed

),

final as (

    select
        snapshot_at,
        cast(snapshot_at as date) as snapshot_date,
        change_type

    from scope

)

select * from final
