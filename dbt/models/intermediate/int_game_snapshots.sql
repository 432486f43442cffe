{{
    config(
        materialized='incremental',
        incremental_strategy='replace_scope',
        scope_column='snapshot_at',
        scope_grain='snapshot',
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}

{#
    One row per category per snapshot: its viewers and live channels at that moment.
    A few hundred rows per snapshot, from which agg_games_daily takes its peaks and
    dim_games its first and last sightings. Incremental by snapshot, like
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
        game_id,
        -- one name per category and snapshot, even if streams disagreed
        max(game_name) as game_name,
        cast(sum(viewer_count) as {{ dbt.type_bigint() }}) as viewer_count,
        count(distinct user_id) as channel_count

    from changed_rows
    group by snapshot_at, snapshot_date, game_id

)

select * from final
