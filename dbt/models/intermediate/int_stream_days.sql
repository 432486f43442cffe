{{
    config(
        materialized='incremental',
        incremental_strategy='upsert_keys',
        unique_key=[
            'snapshot_date',
            'stream_id',
            'user_id',
            'user_login',
            'user_name',
            'game_id',
        ],
        alive_column='last_seen_at',
        prune_column='snapshot_date',
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}
-- depends_on: {{ ref('int_snapshots') }}

{#
    Partial aggregates of fct_stream_snapshots, one row per day, stream, channel name
    and category: about a tenth of its rows. fct_streams, fct_broadcasts and the
    dimensions are built from these instead of from every stream snapshot.

    Incremental by day. A day the batch only appends to (every snapshot of the batch in
    that day is loaded and later than all the day holds) merges the new snapshots into
    the rows they touch: counts and sums add, first and last take the extremes, and the
    latest values come from the later side. Any other day (a late or reprocessed
    snapshot, a reweighted or removed one) is aggregated again from
    fct_stream_snapshots, and its rows that no longer exist come back as tombstones
    (null `last_seen_at`) so that the strategy deletes them.
#}

with

stream_snapshots as (

    select * from {{ ref('fct_stream_snapshots') }}

),

{% if is_incremental() %}

scope as (

    select * from {{ ref('int_batch_scope') }}

),

scope_days as (

    select distinct snapshot_date from scope

),

day_progress as (

    -- how far each day of the batch already is in this table
    select
        previous.snapshot_date,
        max(previous.last_seen_at) as last_seen_at

    from {{ this }} as previous
    inner join scope_days
        on previous.snapshot_date = scope_days.snapshot_date
    group by previous.snapshot_date

),

batch_days as (

    select
        scope.snapshot_date,
        min(
            case
                when
                    scope.change_type = 'loaded'
                    and (
                        day_progress.last_seen_at is null
                        or scope.snapshot_at > day_progress.last_seen_at
                    )
                    then 1
                else 0
            end
        ) = 1 as is_appended

    from scope
    left join day_progress
        on scope.snapshot_date = day_progress.snapshot_date
    group by scope.snapshot_date

),

snapshots as (

    select * from {{ ref('int_snapshots') }}

),

changed_snapshots as (

    -- an appended day's snapshots in the batch; every snapshot of a rebuilt day
    select
        scope.snapshot_at,
        batch_days.is_appended

    from scope
    inner join batch_days
        on
            scope.snapshot_date = batch_days.snapshot_date
            and batch_days.is_appended

    union all

    select
        snapshots.snapshot_at,
        batch_days.is_appended

    from snapshots
    inner join batch_days
        on
            snapshots.snapshot_date = batch_days.snapshot_date
            and not batch_days.is_appended

),

changed_rows as (

    -- read fct_stream_snapshots once: DuckDB materializes a CTE read twice
    select
        stream_snapshots.*,
        changed_snapshots.is_appended

    from stream_snapshots
    inner join changed_snapshots
        on stream_snapshots.snapshot_at = changed_snapshots.snapshot_at

),

{% else %}

changed_rows as (

    select
        *,
        false as is_appended

    from stream_snapshots

),

{% endif %}

partials as (

    select
        snapshot_date,
        stream_id,
        user_id,
        user_login,
        user_name,
        game_id,
        game_name,
        language,
        started_at,
        1 as snapshot_count,
        viewer_seconds,
        weight_seconds as streamed_seconds,
        viewer_count as peak_viewers,
        snapshot_at as first_seen_at,
        snapshot_at as last_seen_at

    from changed_rows

    {% if is_incremental() %}

    union all

    -- what an appended day already holds for the keys the new snapshots touch
    select
        previous.snapshot_date,
        previous.stream_id,
        previous.user_id,
        previous.user_login,
        previous.user_name,
        previous.game_id,
        previous.game_name,
        previous.language,
        previous.started_at,
        previous.snapshot_count,
        previous.viewer_seconds,
        previous.streamed_seconds,
        previous.peak_viewers,
        previous.first_seen_at,
        previous.last_seen_at

    from {{ this }} as previous
    inner join batch_days
        on
            previous.snapshot_date = batch_days.snapshot_date
            and batch_days.is_appended
    where
        exists (
            select 1
            from changed_rows
            where
                changed_rows.is_appended
                and changed_rows.snapshot_date = previous.snapshot_date
                and changed_rows.stream_id = previous.stream_id
                and changed_rows.user_id = previous.user_id
                and changed_rows.user_login
                is not distinct from previous.user_login
                and changed_rows.user_name
                is not distinct from previous.user_name
                and changed_rows.game_id
                is not distinct from previous.game_id
        )

    {% endif %}

),

combined as (

    select
        snapshot_date,
        stream_id,
        user_id,
        user_login,
        user_name,
        game_id,
        {{ latest('game_name', 'last_seen_at') }} as game_name,
        {{ latest('language', 'last_seen_at') }} as language,
        min(started_at) as started_at,
        cast(sum(snapshot_count) as {{ dbt.type_bigint() }}) as snapshot_count,
        cast(sum(viewer_seconds) as {{ dbt.type_bigint() }}) as viewer_seconds,
        cast(
            sum(streamed_seconds) as {{ dbt.type_bigint() }}
        ) as streamed_seconds,
        max(peak_viewers) as peak_viewers,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at

    from partials
    group by
        snapshot_date,
        stream_id,
        user_id,
        user_login,
        user_name,
        game_id

),

{% if is_incremental() %}

vanished as (

    -- rows of a rebuilt day that its snapshots no longer produce
    select
        previous.snapshot_date,
        previous.stream_id,
        previous.user_id,
        previous.user_login,
        previous.user_name,
        previous.game_id,
        null as game_name,
        null as language,
        previous.started_at,
        0 as snapshot_count,
        0 as viewer_seconds,
        0 as streamed_seconds,
        0 as peak_viewers,
        previous.first_seen_at,
        null as last_seen_at

    from {{ this }} as previous
    inner join batch_days
        on
            previous.snapshot_date = batch_days.snapshot_date
            and not batch_days.is_appended
    where not exists (
        select 1
        from combined
        where
            combined.snapshot_date = previous.snapshot_date
            and combined.stream_id = previous.stream_id
            and combined.user_id = previous.user_id
            and combined.user_login is not distinct from previous.user_login
            and combined.user_name is not distinct from previous.user_name
            and combined.game_id is not distinct from previous.game_id
    )

),

{% endif %}

final as (

    select * from combined
    {% if is_incremental() %}
    union all
    select * from vanished
    {% endif %}

)

select * from final
