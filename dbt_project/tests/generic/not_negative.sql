{#- None of the columns is negative (nulls pass); the failing rows show every listed column. -#}
{% test not_negative(model, columns) %}
    select
        {{ columns | join(', ') }}
    from {{ model }}
    where not ({% for c in columns %}coalesce({{ c }} >= 0, true){{ " and " if not loop.last }}{% endfor %})
{% endtest %}
