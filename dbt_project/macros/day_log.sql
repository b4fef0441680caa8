{#- The client states of a minute snapshot, in the order of the original day-log document. -#}
{% macro user_states() -%}
    {{ return(['player', 'spectator', 'lobby', 'menu', 'total']) }}
{%- endmacro %}

{#- var('segment_minutes'), validated: a positive integer that divides 1440. -#}
{% macro segment_minutes() -%}
    {%- set raw = var('segment_minutes', 60) -%}
    {%- set text = raw | string -%}
    {%- if not modules.re.match('^[0-9]+$', text) or (text | int) <= 0 or 1440 % (text | int) != 0 -%}
        {{ exceptions.raise_compiler_error("var segment_minutes=" ~ raw ~ " must be a positive integer that divides 1440") }}
    {%- endif -%}
    {{ return(text | int) }}
{%- endmacro %}
