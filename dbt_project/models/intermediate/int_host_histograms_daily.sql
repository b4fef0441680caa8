{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        unique_key='day',
        tags=['daily'],
        post_hook="create index if not exists {{ this.name }}_day on {{ this }} (day)",
    )
}}

{#- The minute histograms of each host, metric and UTC day merged (bucket counts summed): merging composes, so
    the monthly host metrics merge these rows into the month's histogram and read its percentiles, with the
    same error bound as the minute histograms, instead of averaging daily percentiles. -#}
{%- set histograms = host_histogram_metrics() %}

with host_minutes as (
    select * from {{ ref('stg_hosts__host_minutes') }}
    where {{ window_filter('minute', 'day') }}
),

documents as (
    select
        {{ utc_date('host_minutes.minute') }} as day,
        host_minutes.host_id,
        metrics.metric,
        metrics.document
    from host_minutes
    cross join lateral (
        values
        {%- for metric in histograms %}
            ('{{ metric }}'::text, host_minutes.{{ metric }}){{ "," if not loop.last }}
        {%- endfor %}
    ) as metrics (metric, document)
    where metrics.document is not null
),

final as (
    select
        documents.day,
        documents.host_id,
        documents.metric,
        buckets.bucket_order,
        sum(buckets.bucket_count)::bigint as bucket_count
    from documents
    cross join lateral {{ histogram_buckets('documents.document') }} as buckets
    group by 1, 2, 3, 4
)

select * from final
