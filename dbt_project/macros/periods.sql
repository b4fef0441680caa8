{#- Name of the period column of a mart of this grain: minute_start, hour_start (timestamptz), day, week_start,
    month_start, quarter_start, year_start (date: the period's first day). -#}
{% macro period_column(grain) -%}
    {{ return({
        'minute': 'minute_start', 'hour': 'hour_start', 'day': 'day', 'week': 'week_start',
        'month': 'month_start', 'quarter': 'quarter_start', 'year': 'year_start',
    }[grain]) }}
{%- endmacro %}

{#- The period column's value for a timestamptz period start. -#}
{% macro period_value(expression, grain) -%}
    {%- if grain in ('minute', 'hour') -%}
        {{ expression }}
    {%- else -%}
        {{ utc_date(expression) }}
    {%- endif -%}
{%- endmacro %}

{#- window_filter for the period column of a mart of this grain. -#}
{% macro period_window_filter(grain) -%}
    {%- if grain in ('minute', 'hour') -%}
        {{ window_filter(period_column(grain), grain) }}
    {%- else -%}
        {{ window_filter_date(period_column(grain), grain) }}
    {%- endif -%}
{%- endmacro %}
