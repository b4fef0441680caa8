{#-
  Sampled product events (docs/DESIGN.md, "Sampling"). Senders keep or drop users whole, by a salted
  hash of the user id, at a rate per (channel, event); every kept event carries its sample_rate. The
  marts keep their observed counts and add Horvitz-Thompson estimates of the unsampled ones: each kept
  unit (an event, a user) weighs 1 / its chance of being kept. A user's chance is the largest rate
  among the events that put them in the cell: sampling is nested (kept at a rate, kept at every higher
  one), so a user is in the cell exactly when kept at that largest rate, and the event kept at it is
  always among the observed ones.

  `estimate_reliable(sampled_users, min_rate)`: an estimate resting on fewer than
  var('estimate_min_sampled_users') (30) sampled users is too thin to show (its relative standard error
  at rate r is about sqrt((1 - r) / n), and the normal approximation behind an error bar fails below
  that), unless nothing in the row was sampled (min_rate = 1: the estimate is the count itself).
  False, never NULL, when the rate is unknown.
-#}

{% macro estimate_min_sampled_users() -%}
    {{ return(product_positive_int('estimate_min_sampled_users', 30)) }}
{%- endmacro %}

{% macro estimate_reliable(sampled_users, min_rate) -%}
    coalesce({{ sampled_users }} >= {{ estimate_min_sampled_users() }} or {{ min_rate }} >= 1, false)
{%- endmacro %}
