{{
    config(
        unique_key='day',
        tags=['daily'],
        pre_hook=["set local work_mem = '256MB'", "set local jit = off"],
        post_hook="create index if not exists {{ this.name }}_day on {{ this }} (day)",
    )
}}

{#-
  Distinct minutes per (day, user, state) in one hash aggregate over the unnested state lists,
  instead of a count(distinct minute) that sorts every listing (about 14 M at 5,000 users).

  A server sends one snapshot per minute, so a user listed by only one server in a day has one
  listing per minute: their listings are their minutes. Only a user listed by several servers
  that day can be listed twice in one minute; for those alone (none on a day without moves) the
  minutes are counted distinct in a second pass, which a one-time filter skips when there are none.
  A run of one day groups by user and state alone (its listings all fall on that day), and the
  server ids compare bytewise: only their order within one user matters, not a collation's.
-#}
{%- set bounds = window_period_bounds('day') %}
{%- if bounds is not none and (bounds.upper - bounds.lower).days == 1 %}
{%- set listing_day = "'" ~ bounds.lower.date().isoformat() ~ "'::date" %}
{%- else %}
{%- set listing_day = none %}
{%- endif %}

with snapshot_users as not materialized (
    select
        server_id,
        minute,
        state,
        user_id
    from {{ ref('stg_game_servers__snapshot_users') }}
    where {{ window_filter('minute', 'day') }}
),

listings as (
    select
        {{ listing_day or utc_date('minute') }} as day,
        user_id,
        state,
        count(*) as listings,
        min(server_id collate "C") < max(server_id collate "C") as on_several_servers
    from snapshot_users
    group by {{ 'user_id, state' if listing_day else '1, 2, 3' }}
),

users_on_several_servers as materialized (
    select
        day,
        user_id,
        state
    from listings
    where on_several_servers
),

-- distinct minutes: a user listed on two servers in the same minute counts once
distinct_minutes as (
    select
        {{ utc_date('snapshot_users.minute') }} as day,
        snapshot_users.user_id,
        snapshot_users.state,
        count(distinct snapshot_users.minute) as minutes
    from snapshot_users
    inner join users_on_several_servers as several
        on several.day = {{ utc_date('snapshot_users.minute') }}
        and several.user_id = snapshot_users.user_id
        and several.state = snapshot_users.state
    where exists (select from users_on_several_servers)
    group by 1, 2, 3
),

final as (
    select
        listings.day,
        listings.user_id,
        listings.state,
        coalesce(distinct_minutes.minutes, listings.listings) as minutes
    from listings
    left join distinct_minutes
        on distinct_minutes.day = listings.day
        and distinct_minutes.user_id = listings.user_id
        and distinct_minutes.state = listings.state
)

select * from final
