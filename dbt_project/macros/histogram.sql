{#-
  Quantiles of merged log-bucket histograms (the collectors' LogHistogram, docs/DESIGN.md item 6).

  Buckets: a = var('histogram_relative_accuracy') (0.005), gamma = (1 + a) / (1 - a); bucket i
  holds the values v with gamma^(i-1) < v <= gamma^i. Values <= 0 are counted apart (zero count).
  Merging = summing counts per bucket index (across minutes, hours, days, hosts).

  Rank rule: with n = zero count + sum of bucket counts, the q-quantile is the value of rank
  r = max(1, ceil(q * n)) in ascending order: walk the zero bucket first (value 0), then the
  buckets by ascending index, and take the first whose cumulative count reaches r. A bucket i is
  reported as 2 * gamma^i / (gamma + 1), whose relative error to any value of the bucket is at
  most a (0.5 %), rounded to 6 decimals (so the value does not depend on the last bits of
  floating point); a zero-bucket rank is reported as 0 exactly.

  `merged_histogram_quantiles(buckets, keys, quantiles)` renders a select over the relation or
  CTE `buckets`, which has the `keys` columns, `bucket_order` (bucket index, or
  histogram_zero_bucket() for the zero count) and `bucket_count`, possibly several rows per
  bucket. It returns one row per key with `observations` and one column `p<q*100>` per quantile.
-#}

{% macro histogram_zero_bucket() -%}
    -2147483648
{%- endmacro %}

{% macro histogram_bucket_value(bucket_index) -%}
    {%- set a = var('histogram_relative_accuracy', 0.005) | float -%}
    {%- set gamma = '((1 + ' ~ a ~ ') / (1 - ' ~ a ~ '))::double precision' -%}
    round((2 * power({{ gamma }}, {{ bucket_index }}) / ({{ gamma }} + 1))::numeric, 6)::double precision
{%- endmacro %}

{% macro quantile_column_name(q) -%}
    p{{ ((q * 1000) | round | int / 10) | string | replace('.0', '') | replace('.', '_') }}
{%- endmacro %}

{% macro merged_histogram_quantiles(buckets, keys, quantiles=[0.5, 0.95, 0.99]) -%}
    {%- set key_list = keys | join(', ') -%}
    select
        {{ key_list }},
        max(observations) as observations
        {%- for q in quantiles %},
        case min(bucket_order) filter (where cumulative_count >= greatest(ceil({{ q }} * observations), 1))
            when {{ histogram_zero_bucket() }} then 0::double precision
            else {{ histogram_bucket_value('min(bucket_order) filter (where cumulative_count >= greatest(ceil(' ~ q ~ ' * observations), 1))') }}
        end as {{ quantile_column_name(q) }}
        {%- endfor %}
    from (
        select
            {{ key_list }},
            bucket_order,
            sum(bucket_count) over (partition by {{ key_list }} order by bucket_order) as cumulative_count,
            sum(bucket_count) over (partition by {{ key_list }}) as observations
        from (
            select
                {{ key_list }},
                bucket_order,
                sum(bucket_count) as bucket_count
            from {{ buckets }}
            group by {{ key_list }}, bucket_order
        ) as merged
    ) as cumulative
    group by {{ key_list }}
{%- endmacro %}

{#-
  Rows (bucket_order, bucket_count) of one histogram jsonb column, for a lateral join:
  `cross join lateral {{ histogram_buckets('h.player_ping_ms') }} as b`.
-#}
{% macro histogram_buckets(column) -%}
    (
        select
            bucket_index::integer as bucket_order,
            bucket_count::bigint as bucket_count
        from rows from (
            jsonb_array_elements_text({{ column }} -> 'i'),
            jsonb_array_elements_text({{ column }} -> 'c')
        ) as buckets (bucket_index, bucket_count)
        union all
        select
            {{ histogram_zero_bucket() }} as bucket_order,
            ({{ column }} ->> 'z')::bigint as bucket_count
        where coalesce(({{ column }} ->> 'z')::bigint, 0) > 0
    )
{%- endmacro %}
