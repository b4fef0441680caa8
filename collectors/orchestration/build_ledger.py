"""What the build ledger (``quality.dbt_builds``) says was built: the successful builds of whole parts.

``builds.build_part`` records a build only once it and its data tests passed. A build restricted to one model family
is recorded with that family and covers no window (the window's other models were not rebuilt), so it is left out.
The reconcile planner, the weekly cleanup and the mart retention all read the ledger through this.
"""

from __future__ import annotations

import datetime as dt

import psycopg

from collectors.orchestration.cadences import Window
from collectors.orchestration.reconcile import Build

# Rows recorded before started_at existed started their elapsed seconds before they finished.
_WHOLE_BUILDS = """
select cadence, part, window_start, window_end,
       coalesce(started_at, finished_at - make_interval(secs => elapsed_seconds))
from quality.dbt_builds
where family is null and window_end > %(since)s
    and (%(until)s::timestamptz is null or window_start < %(until)s)
    and (%(cadence)s::text is null or cadence = %(cadence)s)
    and (%(part)s::text is null or part = %(part)s)
"""

EVER = dt.datetime(1, 1, 1, tzinfo=dt.UTC)  # ``since`` for every build the ledger holds


def whole_builds(
    conn: psycopg.Connection,
    *,
    since: dt.datetime,
    until: dt.datetime | None = None,
    cadence: str | None = None,
    part: str | None = None,
) -> list[Build]:
    """The successful whole-part builds whose window overlaps ``[since, until)``, of one cadence and part if given,
    each with when it started (UTC)."""
    rows = conn.execute(_WHOLE_BUILDS, {"since": since, "until": until, "cadence": cadence, "part": part})
    return [
        Build(name, built_part, Window(start, end), started.astimezone(dt.UTC))
        for name, built_part, start, end, started in rows
    ]
