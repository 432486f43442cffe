{{
    config(
        incremental_strategy='replace_scope',
        scope_column='snapshot_at',
        scope_grain='snapshot',
    )
}}

{#
    Incremental by snapshot: every snapshot of the batch scope is deleted and written
    again. Loaded snapshots come from staging; a reweighted one is re-read
    from this table with its new weight; a removed one is only deleted.
#}

with

batch_rows as (

    select * from {{ ref('stg_twitch__streams') }}

),

snapshots as (

    select * from {{ ref('int_snapshots') }}

),

scope as (

    select * from {{ ref('int_batch_scope') }}

),

loaded as (

    select
        batch_rows.snapshot_at,
        batch_rows.snapshot_date,
        batch_rows.stream_id,
        batch_rows.user_id,
        batch_rows.user_login,
        batch_rows.user_name,
        batch_rows.game_id,
        batch_rows.game_name,
        batch_rows.language,
        batch_rows.viewer_count,
        batch_rows.started_at,
        snapshots.weight_seconds

    from batch_rows
    inner join snapshots
        on batch_rows.snapshot_at = snapshots.snapshot_at

),

{% if is_incremental() %}

reweighted as (

    select
        previous_rows.snapshot_at,
        previous_rows.snapshot_date,
        previous_rows.stream_id,
        previous_rows.user_id,
        previous_rows.user_login,
        previous_rows.user_name,
        previous_rows.game_id,
        previous_rows.game_name,
        previous_rows.language,
        previous_rows.viewer_count,
        previous_rows.started_at,
        snapshots.weight_seconds

    from {{ this }} as previous_rows
    inner join scope
        on
            previous_rows.snapshot_at = scope.snapshot_at
            and scope.change_type = 'reweighted'
    inner join snapshots
        on previous_rows.snapshot_at = snapshots.snapshot_at

),

{% endif %}

unioned as (

    select * from loaded
    {% if is_incremental() %}
    union all
    select * from reweighted
    {% endif %}

),

final as (

    select
        snapshot_at,
        snapshot_date,
        stream_id,
        user_id,
        user_login,
        user_name,
        game_id,
        game_name,
        language,
        viewer_count,
        started_at,
        {{ dbt.datediff('started_at', 'snapshot_at', 'second') }}
            as uptime_seconds,
        weight_seconds,
        viewer_count * weight_seconds as viewer_seconds

    from unioned

)

select * from final
