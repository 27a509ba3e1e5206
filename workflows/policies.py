"""How long each activity may take and how it is retried: every rule in one place, one block
per activity the generation workflow calls, each with its reason.

What a failure *means* (retry or not, which category, could a retry bill twice) is decided by
the provider contract's table, `gptimage2/_classify.py`; the activities raise what it says as
`ApplicationError`s (non-retryable ones with `non_retryable=True`, of the types listed below).
This module decides what the workflow does with that: attempts, backoff, deadlines.

Imported by workflow code (so: only values, no I/O) and by the activities (the create's own
backoff). Changing a value here changes no history: activity options are not compared on
replay, but they are the behaviour, so tests/workflows/test_activity_failures.py and friends cover them.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from gptimage2 import VideoParams

from .models import ActivityErrorType

# ---- create: ProviderActivities.create_task ---------------------------------------------------
# Runs once: Temporal would retry a timed-out attempt (a worker that died mid-call) whatever the
# error type, and that attempt may have created a task. The activity itself retries what surely
# never arrived (CreateRetry.SAFE); anything else is reconciled, never repeated.
CREATE_RETRY = RetryPolicy(maximum_attempts=1)
# Room for the activity's own retries below (about 31 s of backoff), the image re-check and a slow answer.
CREATE_TIMEOUT = timedelta(seconds=120)
# The activity's own retries of a create that surely never arrived (connection refused, 429,
# 503), in seconds; a 429's Retry-After replaces the step, capped at CREATE_MAX_WAIT.
CREATE_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)
CREATE_MAX_WAIT = 30.0
# The run's first create (text-to-video; image-to-video re-checks its images first, which may
# take longer) runs as a local activity inside the first workflow task, tried once: five events
# fewer than an activity (scheduled, started, completed, and the workflow task its completion
# wakes). It must end well before the worker heartbeats that task (at 80 % of the 10 s task
# timeout): a local activity still running then would be run again by the next worker if this
# one died. What surely never arrived (refused connection, 429, the gateway's own 5xx envelope)
# is created again as the activity below; anything else is reconciled like the activity's.
# Only the first try of the first task sends it: a create asked for again (a retried first task,
# or a replay that finds no result recorded, after the task was heartbeated) may follow a worker
# that died with its request in flight, so the activity refuses it as ambiguous, unsent.
INLINE_CREATE_TIMEOUT = timedelta(seconds=5)
# Non-retryable: everything, by the policy. The workflow reconciles CreateAmbiguous and a timeout
# (the task may exist) and fails the generation on the rest: ProviderRejected, or a failure that
# surely never arrived and outlasted CREATE_BACKOFF (typed as the client's exception).
# After an ambiguous create we never create again blindly; a task that did get created calls
# back on this generation's unforgeable URL, and is adopted if it does within the window below.
# Runs started before the window was the provider's word (patched) wait this long.
AMBIGUOUS_CREATE_WINDOW = timedelta(minutes=15)
# The window: as long as the provider says such a task can take (its stated estimate for these
# settings, gptimage2.profiles, times AMBIGUOUS_CREATE_TAIL for a slow queue), plus the callback's
# own delivery (three retries after 1, 2 and 4 s, each answer awaited up to 10 s); never more
# than AMBIGUOUS_CREATE_WINDOW. A task that existed has called back by then, unless every one of
# its callbacks was lost: the generation then fails, and ops may resolve it by hand before that.
AMBIGUOUS_CREATE_TAIL = 3.0
CALLBACK_DELIVERY_SPAN = timedelta(seconds=1 + 2 + 4 + 4 * 10)


def ambiguous_create_window(params: VideoParams, override_seconds: float | None = None) -> timedelta:
    """How long an unresolved create waits for its task to call back (`override_seconds`: a
    tuning knob, GenerationInput.ambiguous_create_window_seconds)."""
    if override_seconds is not None:
        return timedelta(seconds=override_seconds)
    stated = params.profile.estimated_generation_seconds(params) * AMBIGUOUS_CREATE_TAIL
    return min(AMBIGUOUS_CREATE_WINDOW, timedelta(seconds=stated) + CALLBACK_DELIVERY_SPAN)


# ---- read: ProviderActivities.get_task (a local activity) -----------------------------------
# A read is idempotent and quick: a local activity (one marker event, no task queue round trip)
# is safe to re-run, so it retries with backoff until the provider answers or refuses for good.
READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
# One read: the client's own timeouts (30 s to read) end a hung request before this.
READ_TIMEOUT = timedelta(seconds=40)
# A provider unreadable this long is an outage we stop waiting out: the generation fails.
READ_SCHEDULE_TO_CLOSE = timedelta(minutes=30)
# Non-retryable: ProviderRejected, raised so by the activity when the provider refuses the read
# for good (the task was purged, or our key lost access: 401/403/404). A 429's Retry-After
# replaces the backoff step.

# ---- wait: callback or poll (VideoGenerationWorkflow._wait_for_end) ---------------------------
# The callback is the normal way a task's end is learnt; a poll is the safety net for a lost one.
# A poll before the provider's own estimate of the generation time (`task_info.estimated_time`)
# mostly re-reads a task still running, and each costs the history a timer, a workflow task and
# a read (on the callback happy path one poll was 8 events and 4 billable actions of 34 and 12):
# the first poll waits for the estimate, within the generation's poll bounds. A lost callback is
# noticed that much later (at most `poll_max_seconds` after the create).


def first_poll_seconds(estimated_time: float | None, initial: float, maximum: float) -> float:
    """Seconds from the create to the first poll: the provider's estimate, within [initial, maximum]."""
    return min(max(initial, estimated_time or 0.0), max(initial, maximum))


# ---- re-host: RehostActivities.rehost_result --------------------------------------------------
# Non-retryable: the link expired or was withdrawn (gptimage2.classify_result_status), or it
# points at a host we never download from.
REHOST_NON_RETRYABLE = (ActivityErrorType.LINK_EXPIRED, ActivityErrorType.RESULT_HOST_REFUSED)
# A copy resumes from its last heartbeat, so retrying a dead worker's or a stalled link's copy
# costs little; it backs off to minutes, never past the link's expiry (schedule-to-close).
REHOST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=list(REHOST_NON_RETRYABLE),
)
# One attempt at most; the link's remaining life (less EXPIRY_MARGIN) is the re-host's hard
# deadline. The heartbeat timeout is GenerationInput.heartbeat_timeout_seconds (a tuning knob).
REHOST_ATTEMPT_TIMEOUT = timedelta(hours=1)
# Starts re-hosting only if this much of the link's life is left, so a slow copy cannot race expiry.
EXPIRY_MARGIN = timedelta(minutes=1)

# ---- cancel: ProviderActivities.cancel_task ---------------------------------------------------
# Best effort, once the generation has ended: a few quick tries, then the task is left to the
# provider. Only retryable trouble raises; a task that cannot be cancelled (any more) or a
# refusal answers None (the client maps 404/405/409 to CancelNotSupportedError).
CANCEL_RETRY = RetryPolicy(maximum_attempts=3)
CANCEL_TIMEOUT = timedelta(seconds=30)

# ---- ledger: LedgerActivities.reserve_credits / settle_credits / adjust_credits ---------------
# One update each on the tenant's ledger workflow, idempotent by reservation id, so a timed-out
# attempt (a worker that died mid-call) is simply repeated. A reserve that cannot reach the
# ledger for LEDGER_RESERVE_WINDOW fails the generation: no task is created without a
# reservation. A settle keeps trying for a day: the charge must reach the ledger. An adjust (the
# provider's own figure, once the task exists) tries for LEDGER_RESERVE_WINDOW, then the settle
# books the truth anyway. The ledger's own check of unclaimed reservations (started_generations)
# uses LEDGER_TIMEOUT and LEDGER_RETRY, without a window: it runs until Temporal answers.
LEDGER_TIMEOUT = timedelta(seconds=5)
LEDGER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
LEDGER_RESERVE_WINDOW = timedelta(minutes=5)
LEDGER_SETTLE_WINDOW = timedelta(days=1)
