"""Stored presigned URLs renew themselves through the asset graph.

A computed column whose expression calls `net.presigned_url` (`serving_url=net.presigned_url(t.video.fileurl,
86400)`) stores URLs that stop working once their lifetime has passed. Three things keep them alive:

- **Staleness.** On a re-run of the column, a row is kept as it was only while its URLs are younger than
  `RENEW_AT` (80%) of their lifetime; past that they are signed again (`is_stale`, used by the computed step's
  `Computer.unchanged`). The age comes from the URL itself (`stores.signed_url_expiry`: `X-Amz-Date` and
  `X-Amz-Expires`, `X-Goog-*`, a SAS's `se`), so rows signed by earlier runs are judged correctly.
- **A schedule.** The column's asset carries `AutomationCondition.eager()` OR'ed with a cron condition
  (`automation_condition`): at each tick of `renewal_cron(lifetime)` every materialized batch of the column is
  re-materialized (one run per batch), which re-signs the stale rows. The cadence is the largest standard cron
  interval no longer than `TICK_SHARE` (15%) of the lifetime: a URL kept at one tick (younger than 80%) is
  renewed at the next, before it expires, with at least 5% of its lifetime left for the sensor and the run
  (a tick at 80% of the lifetime would not do: a URL signed just after a tick would be 2 ticks old, 160%, at
  the tick that first finds it stale). 24 h URLs renew every 3 hours; 7-day URLs daily; 1-hour URLs every
  6 minutes. Cron cannot tick faster than a minute, so URLs living less than about 7 minutes cannot be kept
  alive this way: sign those at query time.
- **Metadata.** Each materialization records when the batch's earliest URL expires (`output_metadata`).

Selecting a stored URL that expired anyway (no daemon running, a failed run) warns once per column per
process (pxt_assets/api/query.py).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg

from pxt_assets import stores
from pxt_assets.spec import ColumnSpec

#: a stored URL is signed again once this share of its lifetime has passed
RENEW_AT = 0.8
#: the renewal cron's interval is at most this share of the lifetime (see the module's docstring)
TICK_SHARE = 0.15
#: the standard cron intervals, shortest first: every N minutes for N dividing 60, every N hours for N
#: dividing 24, daily (uneven intervals such as "every 2 days" restart at each month's end)
CRON_INTERVALS: tuple[tuple[int, str], ...] = (
    *((60 * n, "* * * * *" if n == 1 else f"*/{n} * * * *") for n in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)),
    *((3600 * n, "0 * * * *" if n == 1 else f"0 */{n} * * *") for n in (1, 2, 3, 4, 6, 8, 12)),
    (86400, "0 0 * * *"),
)
#: the cadence when the lifetime is not a literal (`net.presigned_url(t.f, t.seconds)`): each URL's own
#: lifetime decides its staleness
UNKNOWN_LIFETIME_CRON = "0 * * * *"


def renewal_cron(lifetime: float | None) -> str:
    """The cron schedule that renews URLs living `lifetime` seconds (see the module's docstring)."""
    if lifetime is None:
        return UNKNOWN_LIFETIME_CRON
    fitting = [cron for seconds, cron in CRON_INTERVALS if seconds <= TICK_SHARE * lifetime]
    return fitting[-1] if fitting else CRON_INTERVALS[0][1]


def renewal_interval(lifetime: float | None) -> int:
    """The seconds between two ticks of `renewal_cron(lifetime)`."""
    cron = renewal_cron(lifetime)
    return next(seconds for seconds, c in CRON_INTERVALS if c == cron)


def automation_condition(col: ColumnSpec, automation: bool) -> dg.AutomationCondition | None:
    """A computed column's condition: eager (a new batch's columns follow its source); for a column that
    stores presigned URLs, also a re-materialization of each materialized batch at every renewal tick."""
    if not automation:
        return None
    eager = dg.AutomationCondition.eager()
    if not col.stores_presigned_urls:
        return eager
    cron = renewal_cron(col.presigned_lifetime)
    renew = (dg.AutomationCondition.cron_tick_passed(cron).since_last_handled()
             & ~dg.AutomationCondition.missing()  # a batch never computed is eager's business
             & ~dg.AutomationCondition.in_progress()).with_label(f"renew presigned URLs ({cron})")
    return eager | renew


def urls_in(value: Any) -> Iterator[str]:
    """The http(s) URLs in a stored value: the value itself, or the strings of a JSON value."""
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            yield value
        elif value[:1] in ("{", "["):
            try:
                parsed = json.loads(value)
            except ValueError:
                return
            yield from urls_in(parsed)
    elif isinstance(value, dict):
        for v in value.values():
            yield from urls_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from urls_in(v)


def expiries(value: Any) -> Iterator[stores.SignedExpiry]:
    for url in urls_in(value):
        got = stores.signed_url_expiry(url)
        if got is not None:
            yield got


def is_stale(value: Any, lifetime: float | None, now: float | None = None) -> bool:
    """Whether a stored value holds a presigned URL past `RENEW_AT` of its lifetime (the column's `lifetime`,
    else the URL's own). A URL whose expiry cannot be read (an http(s) URL passed through) never is."""
    now = time.time() if now is None else now
    for got in expiries(value):
        life = lifetime if lifetime is not None else got.lifetime
        renew_from = got.expires_at - (1 - RENEW_AT) * life if life is not None else got.expires_at
        if now >= renew_from:
            return True
    return False


def earliest_expiry(values: Iterable[Any]) -> float | None:
    """The soonest expiry of the presigned URLs in `values` (seconds since the epoch), or None."""
    return min((got.expires_at for v in values for got in expiries(v)), default=None)


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")


def definition_metadata(col: ColumnSpec) -> dict[str, Any]:
    """What the column's asset definition shows about its renewal."""
    if not col.stores_presigned_urls:
        return {}
    lifetime = col.presigned_lifetime
    return {"url_lifetime_s": lifetime if lifetime is not None else "per row",
            "url_renewal_cron": renewal_cron(lifetime)}


def output_metadata(col: ColumnSpec, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A materialization's metadata for a column of presigned URLs: when the batch's earliest URL expires
    (ISO 8601 UTC and seconds since the epoch), the lifetime and the renewal schedule."""
    if not col.stores_presigned_urls:
        return {}
    meta = definition_metadata(col)
    soonest = earliest_expiry(r.get("value") for r in records if r.get("error") is None)
    if soonest is not None:
        meta["urls_expire_at"] = iso(soonest)
        meta["urls_expire_at_unix"] = int(soonest)
    return meta


__all__ = ["CRON_INTERVALS", "RENEW_AT", "TICK_SHARE", "automation_condition", "definition_metadata",
           "earliest_expiry", "is_stale", "iso", "output_metadata", "renewal_cron", "renewal_interval", "urls_in"]
