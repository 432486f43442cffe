-- Every channel of dim_channels has exactly one current row in
-- dim_channel_names: returns the channels where not.

with

current_rows as (

    select
        user_id,
        count(*) as current_count

    from {{ ref('dim_channel_names') }}
    where is_current
    group by user_id

),

channels as (

    select * from {{ ref('dim_channels') }}

),

compared as (

    select
        channels.user_id,
        current_rows.current_count

    from channels
    left join current_rows
        on channels.user_id = current_rows.user_id
    where current_rows.current_count is distinct from 1

)

select * from compared
