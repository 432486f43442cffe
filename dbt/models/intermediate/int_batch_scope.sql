{#
    What the running batch changes, one row per snapshot:
    - loaded: a snapshot of the batch; its rows are (re)loaded;
    - reweighted: the snapshot right after a loaded or removed one; its weight depends
      on its predecessor, so a late arrival changes it;
    - removed: a snapshot time a replaced file no longer holds; its rows go away.
    Day-level models rebuild the days of these snapshots and nothing else.
#}

with

snapshots as (

    select * from {{ ref('int_snapshots') }}

),

pending_removals as (

    select * from {{ source('ops', 'pending_removals') }}

),

removed as (

    select distinct snapshot_at
    from pending_removals
    where snapshot_at not in (select snapshot_at from snapshots)

),

changed_points as (

    select snapshot_at from snapshots where is_in_batch
    union all
    select snapshot_at from removed

),

reweighted as (

    -- the first snapshot after each changed point
    select min(snapshots.snapshot_at) as snapshot_at
    from changed_points
    inner join snapshots
        on snapshots.snapshot_at > changed_points.snapshot_at
    group by changed_points.snapshot_at

),

scope as (

    select
        snapshot_at,
        'loaded' as change
    from snapshots
    where is_in_batch

    union all

    select
        snapshot_at,
        'reweighted' as change
    from reweighted
    where snapshot_at not in (select snapshot_at from snapshots where is_in_batch)

    union all

    select
        snapshot_at,
        'removed' as change
    from removed

),

final as (

    select distinct
        snapshot_at,
        cast(snapshot_at as date) as snapshot_date,
        change

    from scope

)

select * from final
