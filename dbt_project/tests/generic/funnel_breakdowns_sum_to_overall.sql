{#-
  Per period, funnel and step of every funnel with breakdown rows, the breakdown rows' users,
  immature and estimated_users sum to the overall mart's row (and drop_off, their difference,
  with them): each user is counted once, under the breakdown value of their chosen attempt's
  entry. A period or step present on one side only fails too.

  `overall` is the overall mart's name, a sibling of `model` in its schema, read without ref():
  a ref would make the overall mart a parent, and dbt's default (eager) test selection would then
  run this test whenever the overall mart alone is built, before the breakdown mart exists. The
  breakdown marts declare a dependency on their overall mart, so in a build of both this test runs
  after both.
-#}
{% test funnel_breakdowns_sum_to_overall(model, overall, period) %}
{%- set overall_relation = model.incorporate(path={"identifier": overall}) %}
with broken_down as (
    select
        {{ period }},
        funnel,
        step,
        sum(users) as users,
        sum(immature) as immature,
        sum(estimated_users) as estimated_users
    from {{ model }}
    group by {{ period }}, funnel, step
),

whole as (
    select
        {{ period }},
        funnel,
        step,
        users,
        immature,
        estimated_users
    from {{ overall_relation }}
    where funnel in (select funnel from {{ model }})
)

select
    coalesce(whole.{{ period }}, broken_down.{{ period }}) as {{ period }},
    coalesce(whole.funnel, broken_down.funnel) as funnel,
    coalesce(whole.step, broken_down.step) as step,
    whole.users as overall_users,
    broken_down.users as breakdown_users
from whole
full join broken_down
    on broken_down.{{ period }} = whole.{{ period }}
    and broken_down.funnel = whole.funnel
    and broken_down.step = whole.step
where whole.users is distinct from broken_down.users
    or whole.immature is distinct from broken_down.immature
    or whole.estimated_users is distinct from broken_down.estimated_users
{% endtest %}
