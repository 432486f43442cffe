with

source as (

    select * from {{ source('landing', 'batch_streams') }}

),

cleaned as (

    select
        id as stream_id,
        nullif(trim(user_id), '') as user_id,
        nullif(trim(user_login), '') as user_login,
        nullif(trim(user_name), '') as user_name,
        nullif(trim(game_id), '') as game_id,
        nullif(trim(game_name), '') as game_name,
        nullif(trim(type), '') as stream_type,
        title,
        -- DuckDB-only: the empty list literal
        coalesce(tags, []) as tags,
        viewer_count,
        started_at,
        nullif(lower(trim(language)), '') as language,
        coalesce(is_mature, false) as is_mature,
        snapshot_at,
        cast(snapshot_at as date) as snapshot_date,
        file_name

    from source

)

select * from cleaned
