{{
    config(
        incremental_strategy='upsert_keys',
        unique_key='game_id',
        alive_column='last_seen_at',
    )
}}

-- depends_on: {{ ref('int_batch_scope') }}

{#
    Incremental by key, like dim_channels, from int_game_snapshots (one row per
    category and snapshot): a batch that only adds later snapshots merges them in;
    any other batch computes the categories it touched again.
#}

with

game_snapshots as (

    select * from {{ ref('int_game_snapshots') }}
    where game_id is not null

),

{% if is_incremental() %}

scope as (

    select * from {{ ref('int_batch_scope') }}

),

batch_rows as (

    select game_snapshots.*
    from game_snapshots
    inner join scope
        on game_snapshots.snapshot_at = scope.snapshot_at

),

{% endif %}

{% if is_incremental() and batch_extends(this, 'last_seen_at') %}

sightings as (

    select
        game_id,
        game_name,
        snapshot_at as first_seen_at,
        snapshot_at as last_seen_at

    from batch_rows

    union all

    select
        previous.game_id,
        previous.game_name,
        previous.first_seen_at,
        previous.last_seen_at

    from {{ this }} as previous
    where previous.game_id in (select batch_rows.game_id from batch_rows)

),

{% elif is_incremental() %}

touched as (

    select game_id from batch_rows

    union

    select previous.game_id
    from {{ this }} as previous
    inner join scope
        on
            previous.first_seen_at <= scope.snapshot_at
            and previous.last_seen_at >= scope.snapshot_at

),

sightings as (

    select
        touched.game_id,
        game_snapshots.game_name,
        game_snapshots.snapshot_at as first_seen_at,
        game_snapshots.snapshot_at as last_seen_at

    from touched
    left join game_snapshots
        on touched.game_id = game_snapshots.game_id

),

{% else %}

sightings as (

    select
        game_id,
        game_name,
        snapshot_at as first_seen_at,
        snapshot_at as last_seen_at

    from game_snapshots

),

{% endif %}

final as (

    select
        game_id,
        {{ latest('game_name', 'last_seen_at') }} as game_name,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at

    from sightings
    group by game_id

)

select * from final
