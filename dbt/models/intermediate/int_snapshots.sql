{#
    The snapshot timeline and the one weighting rule of the project.

    A snapshot stands for the time since the previous snapshot: its weight is that gap,
    capped at twice the crawl interval (an extractor outage is not extrapolated), and
    the first snapshot weighs the nominal interval. Weights are whole seconds, so every
    sum built on them is exact and does not depend on the order rows are added in.
#}

{%- set nominal_seconds = (var('extract_every_minutes') | float * 60) | int -%}

with

ledger as (

    select * from {{ source('ops', 'ledger') }}
    where status in ('done', 'processing')

),

timeline as (

    select
        snapshot_at,
        max(
            case when status = 'processing' then 1 else 0 end
        ) = 1 as is_in_batch

    from ledger
    group by snapshot_at

),

neighbours as (

    select
        snapshot_at,
        is_in_batch,
        lag(snapshot_at) over (order by snapshot_at) as previous_snapshot_at

    from timeline

),

final as (

    select
        snapshot_at,
        cast(snapshot_at as date) as snapshot_date,
        previous_snapshot_at,
        case
            when previous_snapshot_at is null then {{ nominal_seconds }}
            else least(
                {{ dbt.datediff(
                    'previous_snapshot_at', 'snapshot_at', 'second'
                ) }},
                {{ 2 * nominal_seconds }}
            )
        end as weight_seconds,
        is_in_batch

    from neighbours

)

select * from final
