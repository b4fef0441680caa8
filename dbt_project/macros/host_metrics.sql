{#-
  Host and game-server metrics per host and period (docs/DESIGN.md item 6); the models
  fct_host_metrics_{hourly,daily,weekly} are this macro at their grain.

  * scalar metrics: avg / min / max over the minutes of the period (averages computed in
    numeric, so a rebuild gives the same bits);
  * distributions (tick duration, player ping, packet latency): count, avg (sum / count),
    min, max, and p50 / p95 / p99 from the minute histograms merged over the period
    (merged_histogram_quantiles, relative error at most var histogram_relative_accuracy);
  * threshold breaches: minutes of the period above the warning / critical thresholds (vars);
    the ping thresholds apply to each minute's own p95.
-#}

{% macro host_scalar_metrics() -%}
    {#- column: aggregates -#}
    {{ return({
        'cpu_percent': ['avg', 'min', 'max'],
        'memory_percent': ['avg', 'min', 'max'],
        'memory_used_bytes': ['avg', 'max'],
        'load_average_1m': ['avg', 'max'],
        'disk_read_bytes_per_s': ['avg', 'max'],
        'disk_write_bytes_per_s': ['avg', 'max'],
        'net_recv_bytes_per_s': ['avg', 'max'],
        'net_sent_bytes_per_s': ['avg', 'max'],
        'tick_rate': ['avg', 'min', 'max'],
        'connections': ['avg', 'max'],
        'players': ['avg', 'max'],
        'entities': ['avg', 'max'],
        'packet_loss_percent': ['avg', 'max'],
    }) }}
{%- endmacro %}

{% macro host_histogram_metrics() -%}
    {{ return(['tick_duration_ms', 'player_ping_ms', 'packet_latency_ms']) }}
{%- endmacro %}

{#- name: (column, comparison, warning var, critical var) -#}
{% macro host_thresholds() -%}
    {{ return({
        'cpu': ('cpu_percent', '>', 'cpu_percent_warning', 'cpu_percent_critical'),
        'memory': ('memory_percent', '>', 'memory_percent_warning', 'memory_percent_critical'),
        'tick_rate': ('tick_rate', '<', 'tick_rate_warning', 'tick_rate_critical'),
        'ping_p95': ('ping_p95_ms', '>', 'ping_p95_ms_warning', 'ping_p95_ms_critical'),
        'packet_loss': ('packet_loss_percent', '>', 'packet_loss_percent_warning', 'packet_loss_percent_critical'),
    }) }}
{%- endmacro %}

{% macro host_metrics(grain) -%}
{%- set scalars = host_scalar_metrics() -%}
{%- set histograms = host_histogram_metrics() -%}
{%- set thresholds = host_thresholds() -%}

with host_minutes as (
    select * from {{ ref('stg_hosts__host_minutes') }}
    where {{ window_filter('minute', grain) }}
),

minutes as (
    select
        {{ period_start('minute', grain) }} as period_start,
        *
    from host_minutes
),

-- one row per non-empty histogram bucket of every minute, metric by metric
histogram_documents as (
    select
        minutes.host_id,
        minutes.minute,
        minutes.period_start,
        documents.metric,
        documents.document
    from minutes
    cross join lateral (
        values
        {%- for metric in histograms %}
            ('{{ metric }}'::text, minutes.{{ metric }}){{ "," if not loop.last }}
        {%- endfor %}
    ) as documents (metric, document)
    where documents.document is not null
),

histogram_buckets as (
    select
        histogram_documents.host_id,
        histogram_documents.minute,
        histogram_documents.period_start,
        histogram_documents.metric,
        buckets.bucket_order,
        buckets.bucket_count
    from histogram_documents
    cross join lateral {{ histogram_buckets('histogram_documents.document') }} as buckets
),

period_quantiles as (
    {{ merged_histogram_quantiles('histogram_buckets', ['host_id', 'period_start', 'metric']) }}
),

period_moments as (
    select
        host_id,
        period_start,
        metric,
        sum((document ->> 'sum')::numeric) as value_sum,
        min((document ->> 'min')::double precision) as value_min,
        max((document ->> 'max')::double precision) as value_max
    from histogram_documents
    group by host_id, period_start, metric
),

ping_buckets as (
    select
        host_id,
        minute,
        bucket_order,
        bucket_count
    from histogram_buckets
    where metric = 'player_ping_ms'
),

-- each minute's own ping p95, for the ping thresholds
minute_ping as (
    {{ merged_histogram_quantiles('ping_buckets', ['host_id', 'minute'], [0.95]) }}
),

assessed_minutes as (
    select
        minutes.*,
        minute_ping.p95 as ping_p95_ms
    from minutes
    left join minute_ping
        on minute_ping.host_id = minutes.host_id
        and minute_ping.minute = minutes.minute
),

scalar_stats as (
    select
        host_id,
        period_start,
        count(*) as minutes_observed,
        sum(samples)::bigint as samples,
        max(cpu_percent_max) as cpu_percent_peak,
        max(memory_total_bytes) as memory_total_bytes,
        {%- for column, aggregates in scalars.items() %}
        {%- for aggregate in aggregates %}
        {%- if aggregate == 'avg' %}
        avg({{ column }}::numeric)::double precision as {{ column }}_avg,
        {%- else %}
        {{ aggregate }}({{ column }}) as {{ column }}_{{ aggregate }},
        {%- endif %}
        {%- endfor %}
        {%- endfor %}
        {%- for name, spec in thresholds.items() %}
        count(*) filter (where {{ spec[0] }} {{ spec[1] }} {{ var(spec[2]) }}) as {{ name }}_warning_minutes,
        count(*) filter (where {{ spec[0] }} {{ spec[1] }} {{ var(spec[3]) }}) as {{ name }}_critical_minutes{{ "," if not loop.last }}
        {%- endfor %}
    from assessed_minutes
    group by host_id, period_start
),

distributions as (
    select
        period_moments.host_id,
        period_moments.period_start,
        {%- for metric in histograms %}
        max(period_quantiles.observations) filter (where period_moments.metric = '{{ metric }}') as {{ metric }}_count,
        max((period_moments.value_sum / nullif(period_quantiles.observations, 0))::double precision)
            filter (where period_moments.metric = '{{ metric }}') as {{ metric }}_avg,
        max(period_moments.value_min) filter (where period_moments.metric = '{{ metric }}') as {{ metric }}_min,
        max(period_moments.value_max) filter (where period_moments.metric = '{{ metric }}') as {{ metric }}_max,
        max(period_quantiles.p50) filter (where period_moments.metric = '{{ metric }}') as {{ metric }}_p50,
        max(period_quantiles.p95) filter (where period_moments.metric = '{{ metric }}') as {{ metric }}_p95,
        max(period_quantiles.p99) filter (where period_moments.metric = '{{ metric }}') as {{ metric }}_p99{{ "," if not loop.last }}
        {%- endfor %}
    from period_moments
    inner join period_quantiles
        on period_quantiles.host_id = period_moments.host_id
        and period_quantiles.period_start = period_moments.period_start
        and period_quantiles.metric = period_moments.metric
    group by period_moments.host_id, period_moments.period_start
),

final as (
    select
        {{ period_value('scalar_stats.period_start', grain) }} as {{ period_column(grain) }},
        scalar_stats.host_id,
        scalar_stats.minutes_observed,
        scalar_stats.samples,
        scalar_stats.cpu_percent_peak,
        scalar_stats.memory_total_bytes,
        {%- for column, aggregates in scalars.items() %}
        {%- for aggregate in aggregates %}
        scalar_stats.{{ column }}_{{ aggregate }},
        {%- endfor %}
        {%- endfor %}
        {%- for metric in histograms %}
        coalesce(distributions.{{ metric }}_count, 0)::bigint as {{ metric }}_count,
        {%- for stat in ['avg', 'min', 'max', 'p50', 'p95', 'p99'] %}
        distributions.{{ metric }}_{{ stat }},
        {%- endfor %}
        {%- endfor %}
        {%- for name in thresholds %}
        scalar_stats.{{ name }}_warning_minutes,
        scalar_stats.{{ name }}_critical_minutes{{ "," if not loop.last }}
        {%- endfor %}
    from scalar_stats
    left join distributions
        on distributions.host_id = scalar_stats.host_id
        and distributions.period_start = scalar_stats.period_start
)

select * from final
{%- endmacro %}
