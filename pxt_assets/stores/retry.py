"""The one retry loop for every store and web source: transient failures are ridden out, permanent ones not.

A request whose StoreError is `retryable` (ErrorCode: unreachable, timeout, throttled, server_error) is made
again after an exponential backoff with full jitter (AWS's "Exponential Backoff and Jitter"), or after what
the server's `Retry-After` asked for, until the request's budget is spent: `retry_budget_s` seconds
(config.toml [pixeltable] / PIXELTABLE_RETRY_BUDGET_S, default 60, enough for a 30 s outage). Then the last
error is raised, saying how long and how often it was tried. A permanent error (403, 404, a bad input) is
raised at once.

tenacity runs the loop (`stop_before_delay`: no wait is started that would end past the budget).
The SDKs keep a few quick retries of their own (a dropped connection mid-multipart part is cheaper to
retry there); this loop is what rides out an outage longer than those, with one budget whatever the
provider. Nested calls (an operation built on another retried one) retry only at the outermost level, so
the budget is never multiplied.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import tenacity

from pxt_assets.config import current_settings
from pxt_assets.stores.base import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

BASE_DELAY_S = 0.25
MAX_DELAY_S = 8.0  # an outage's end is noticed within this long
MAX_RETRY_AFTER_S = 60.0  # a server asking for more is waited for this long at most (within the budget)

_active = threading.local()


def backoff_s(attempt: int, retry_after: float | None = None) -> float:
    """How long to wait before retry number `attempt` (0-based): a random delay up to BASE * 2**attempt,
    itself at most MAX_DELAY_S (full jitter: clients that failed together do not come back together), and
    never less than what the server asked for in Retry-After (capped at MAX_RETRY_AFTER_S)."""
    jittered = random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2 ** min(attempt, 16)))
    if retry_after is None:
        return jittered
    return max(min(retry_after, MAX_RETRY_AFTER_S), jittered)


def _wait(state: tenacity.RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    return backoff_s(state.attempt_number - 1, getattr(error, "retry_after", None))


def _log_retry(budget_s: float) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.info("retrying in %.2f s%s (attempt %d, %.1f s of a %g s budget): %s", state.upcoming_sleep,
                 " as Retry-After asked" if getattr(error, "retry_after", None) is not None else "",
                 state.attempt_number, state.seconds_since_start or 0.0, budget_s, error)

    return before_sleep


def _retryable(e: BaseException) -> bool:
    return isinstance(e, StoreError) and e.retryable


_CAP: contextvars.ContextVar[float | None] = contextvars.ContextVar("pxt_retry_cap", default=None)


def load_budget_s() -> float:
    """How long a destination check made while definitions are built retries: PXT_LOAD_RETRY_BUDGET_S
    (default 10 s), not the whole retry budget of runs."""
    return float(os.environ.get("PXT_LOAD_RETRY_BUDGET_S", "10"))


@contextlib.contextmanager
def capped_budget(seconds: float) -> Iterator[None]:
    """Within the block, no request retries for longer than `seconds` (e.g. destination checks made while
    Dagster loads the code location: an unreachable bucket is reported soon, on that table's assets)."""
    token = _CAP.set(seconds)
    try:
        yield
    finally:
        _CAP.reset(token)


def within_cap(fn: Callable[[], T], what: str) -> T:
    """`fn()`; inside `capped_budget(seconds)`, given up (StoreError, kind timeout) if it has not returned after
    that long: a server that accepts connections and never answers would otherwise hold each attempt for the
    SDK's read timeout (a minute or more), whatever the retry budget. The abandoned call ends on its own."""
    cap = _CAP.get()
    if cap is None:
        return fn()
    outcome: list[Any] = []
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome.append((True, context.run(fn)))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            outcome.append((False, e))

    worker = threading.Thread(target=run, name="pxt-capped-call", daemon=True)
    worker.start()
    worker.join(cap + 1.0)
    if not outcome:
        raise StoreError(f"{what}: no answer within {cap:g} s (PXT_LOAD_RETRY_BUDGET_S, while loading "
                         "definitions)", kind="timeout")
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def call(fn: Callable[[], T], *, budget_s: float | None = None, sleep: Callable[[float], None] = time.sleep) -> T:
    """`fn()`, retried on retryable StoreErrors within the retry budget (tenacity does the looping).

    The first attempt is made before any of the loop is built: almost every request succeeds at once, and a
    batch makes several a row (building tenacity's loop, its state and the settings look-up for each was a
    measurable part of a row's CPU). A first attempt that fails with a retryable error enters the loop as its
    attempt 1 (not made again), and the time it took counts against the budget."""
    if getattr(_active, "depth", 0):
        return fn()  # an outer call() is retrying this request already
    started = time.monotonic()
    _active.depth = 1
    try:
        try:
            return fn()
        except StoreError as e:
            if not e.retryable:
                raise
            first: StoreError | None = e
        if budget_s is None:
            budget_s = current_settings().retry_budget_s
        setting = "retry_budget_s"
        cap = _CAP.get()
        if cap is not None and cap < budget_s:
            budget_s, setting = cap, "PXT_LOAD_RETRY_BUDGET_S (while loading definitions)"
        spent = time.monotonic() - started

        def attempt() -> T:
            nonlocal first
            if first is not None:  # attempt 1 was made above: its error, as if made now
                error, first = first, None
                raise error
            return fn()

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            # never starts a wait that would end past the budget (the first attempt's time included)
            stop=tenacity.stop_before_delay(max(budget_s - spent, 0.0)),
            wait=_wait, sleep=sleep, before_sleep=_log_retry(budget_s), reraise=True)
        try:
            return retrying(attempt)
        except StoreError as e:
            if not e.retryable:
                raise
            attempts = retrying.statistics.get("attempt_number", 1)
            waited = retrying.statistics.get("delay_since_first_attempt", 0.0) + spent
            tried = f"tried {attempts} times over {waited:.1f} s" if attempts > 1 else "tried once"
            raise StoreError(f"{e} ({tried}; the retry budget is {setting} = {budget_s:g} s)",
                             kind=e.kind) from None
    finally:
        _active.depth = 0


def retry_after_s(headers: object) -> float | None:
    """Seconds from a response's Retry-After header (delta-seconds or an HTTP date), or None."""
    get = getattr(headers, "get", None)
    value = get("Retry-After") or get("retry-after") if get is not None else None
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def code_for_status(status: int | None) -> str | None:
    """The retryable code of an HTTP status, or None when the status is permanent (or not an error)."""
    if status is None:
        return None
    if status in (429, 503):
        return "throttled"
    if status == 408:
        return "timeout"
    if status >= 500 and status not in (501, 505):
        return "server_error"
    return None


__all__ = ["call", "backoff_s", "retry_after_s", "code_for_status"]
