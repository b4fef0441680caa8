{#- The boolean SQL expression holds on every row. -#}
{% test expression_is_true(model, expression, column_name=none) %}
    select
        *
    from {{ model }}
    where not ({{ expression }})
{% endtest %}
