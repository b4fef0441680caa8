{#-
  Game-server metrics per server and period from the servers' own reports (raw.server_reports, one about every
  5 seconds); the models fct_server_metrics_{minutely,hourly,daily,weekly} are this macro at their grain, each
  read straight from staging so that no cadence waits for another's tables.

  * reports are first grouped into minutes (sums, counts, extremes, breaching reports per minute), then the
    minutes into the period: every mean is the sum over the period's reports divided by the number of reports
    that carry the field (never a mean of minute means), computed in numeric so a rebuild gives the same bits;
  * a report's own percentiles (player ping, tick duration) describe that report only and cannot be merged into
    a period's percentile: the marts publish their mean and their maximum under names that say so
    (ping_p95_mean, ping_p95_max, ...), never a column named like a period percentile;
  * threshold breaches, per report and per minute: <name>_warning_reports counts the reports past the warning
    threshold (a report past the critical one is past the warning one too, so critical <= warning);
    <name>_warning_minutes counts the minutes with at least one such report. A report without the field
    breaches nothing.
-#}

{#- A number of the report document at `path` (a text[] literal) as `type`; null when missing or not a number. -#}
{% macro server_report_number(path, type) -%}
    case when jsonb_typeof(document #> '{{ path }}') = 'number' then (document #> '{{ path }}')::{{ type }} end
{%- endmacro %}

{#- gauge (a staging column): the type its min and max keep in the marts; averages are double precision -#}
{% macro server_gauges() -%}
    {{ return({
        'cpu_usage_percent': 'double precision',
        'memory_usage_percent': 'double precision',
        'memory_used_bytes': 'bigint',
        'packets_per_sec_incoming': 'double precision',
        'packets_per_sec_outgoing': 'double precision',
        'avg_player_ping_ms': 'double precision',
        'active_connections': 'integer',
        'packet_loss_percent': 'double precision',
        'tick_rate_fps': 'double precision',
        'avg_tick_duration_ms': 'double precision',
        'active_player_count': 'integer',
    }) }}
{%- endmacro %}

{#- mart column prefix: (staging column, statistics over the period's reports) -#}
{% macro server_report_percentiles() -%}
    {{ return({
        'ping_p95': ('player_ping_p95_ms', ['mean', 'max']),
        'ping_p99': ('player_ping_p99_ms', ['max']),
        'tick_duration_p95': ('tick_duration_p95_ms', ['mean', 'max']),
        'tick_duration_p99': ('tick_duration_p99_ms', ['max']),
    }) }}
{%- endmacro %}

{#- name: (staging column, comparison, warning var, critical var); the vars are the host metrics' thresholds -#}
{% macro server_thresholds() -%}
    {{ return({
        'cpu': ('cpu_usage_percent', '>', 'cpu_percent_warning', 'cpu_percent_critical'),
        'memory': ('memory_usage_percent', '>', 'memory_percent_warning', 'memory_percent_critical'),
        'tick_rate': ('tick_rate_fps', '<', 'tick_rate_warning', 'tick_rate_critical'),
        'ping_p95': ('player_ping_p95_ms', '>', 'ping_p95_ms_warning', 'ping_p95_ms_critical'),
        'packet_loss': ('packet_loss_percent', '>', 'packet_loss_percent_warning', 'packet_loss_percent_critical'),
    }) }}
{%- endmacro %}

{% macro server_metrics(grain) -%}
{%- set gauges = server_gauges() -%}
{%- set percentiles = server_report_percentiles() -%}
{%- set thresholds = server_thresholds() -%}

with reports as (
    select * from {{ ref('stg_game_servers__server_reports') }}
    where {{ window_filter('reported_at', grain) }}
),

-- per server and minute: what the period needs of the minute's reports (sums and counts, not means)
minutes as (
    select
        server_id,
        {{ period_start('reported_at', grain) }} as period_start,
        {{ period_start('reported_at', 'minute') }} as minute_start,
        count(*) as reports,
        {%- for column in gauges %}
        sum({{ column }}) as {{ column }}_sum,
        count({{ column }}) as {{ column }}_count,
        min({{ column }}) as {{ column }}_min,
        max({{ column }}) as {{ column }}_max,
        {%- endfor %}
        {%- for name, spec in percentiles.items() %}
        sum({{ spec[0] }}) as {{ name }}_sum,
        count({{ spec[0] }}) as {{ name }}_count,
        max({{ spec[0] }}) as {{ name }}_max,
        {%- endfor %}
        {%- for name, spec in thresholds.items() %}
        count(*) filter (where {{ spec[0] }} {{ spec[1] }} {{ var(spec[2]) }}) as {{ name }}_warning_reports,
        count(*) filter (where {{ spec[0] }} {{ spec[1] }} {{ var(spec[3]) }}) as {{ name }}_critical_reports{{ "," if not loop.last }}
        {%- endfor %}
    from reports
    group by 1, 2, 3
),

final as (
    select
        {{ period_value('period_start', grain) }} as {{ period_column(grain) }},
        server_id,
        sum(reports)::bigint as reports,
        count(*) as minutes_observed,
        {%- for column, type in gauges.items() %}
        (sum({{ column }}_sum)::numeric / nullif(sum({{ column }}_count), 0))::double precision as {{ column }}_avg,
        min({{ column }}_min)::{{ type }} as {{ column }}_min,
        max({{ column }}_max)::{{ type }} as {{ column }}_max,
        {%- endfor %}
        {%- for name, spec in percentiles.items() %}
        {%- for statistic in spec[1] %}
        {%- if statistic == 'mean' %}
        (sum({{ name }}_sum) / nullif(sum({{ name }}_count), 0))::double precision as {{ name }}_mean,
        {%- else %}
        max({{ name }}_max)::double precision as {{ name }}_max,
        {%- endif %}
        {%- endfor %}
        {%- endfor %}
        {%- for name in thresholds %}
        sum({{ name }}_warning_reports)::bigint as {{ name }}_warning_reports,
        sum({{ name }}_critical_reports)::bigint as {{ name }}_critical_reports,
        count(*) filter (where {{ name }}_warning_reports > 0) as {{ name }}_warning_minutes,
        count(*) filter (where {{ name }}_critical_reports > 0) as {{ name }}_critical_minutes{{ "," if not loop.last }}
        {%- endfor %}
    from minutes
    group by server_id, period_start
)

select * from final
{%- endmacro %}
