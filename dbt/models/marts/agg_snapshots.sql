{{
    config(
        incremental_strategy='replace_scope',
        scope_column='snapshot_at',
        scope_grain='snapshot',
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}

{#
    The platform's time series: one row per snapshot. Incremental by snapshot, like
    fct_stream_snapshots.
#}

with

stream_snapshots as (

    select * from {{ ref('fct_stream_snapshots') }}

),

{% if is_incremental() %}

scope as (

    select * from {{ ref('int_batch_scope') }}

),

changed_rows as (

    select stream_snapshots.*
    from stream_snapshots
    inner join scope
        on stream_snapshots.snapshot_at = scope.snapshot_at

),

{% else %}

changed_rows as (

    select * from stream_snapshots

),

{% endif %}

final as (

    select
        snapshot_at,
        snapshot_date,
        max(weight_seconds) as weight_seconds,
        count(*) as stream_count,
        count(distinct user_id) as channel_count,
        count(distinct game_id) as game_count,
        cast(sum(viewer_count) as {{ dbt.type_bigint() }}) as viewer_count,
        cast(
            sum(viewer_seconds) as {{ dbt.type_bigint() }}
        ) as viewer_seconds,
        sum(viewer_seconds) / 3600.0 as hours_watched

    from changed_rows
    group by snapshot_at, snapshot_date

)

select * from final
