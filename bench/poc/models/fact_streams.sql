{{
    config(
        materialized='external',
        location=env_var('POC_DIR') ~ '/reporting/fact_streams.parquet',
        format='parquet',
    )
}}

with

snapshots as (

    select * from read_parquet('{{ env_var("POC_DIR") }}/landing/*.parquet')

),

final as (

    select
        cast(snapshot_at as date) as stream_date,
        user_id,
        game_id,
        max(user_login) as user_login,
        max(game_name) as game_name,
        count(*) as snapshot_count,
        max(viewer_count) as peak_viewers,
        avg(viewer_count) as avg_viewers,
        sum(viewer_count) * 0.25 as hours_watched,
        count(*) * 0.25 as hours_streamed

    from snapshots
    group by 1, 2, 3

)

select * from final
