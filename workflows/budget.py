"""Spend control: a tenant's credit budgets and the ledger that keeps them, as pure logic.

Reserve before create, settle at the task's end: a provider task is created only after its
credits (the model's billing rule, gptimage2.profiles) are reserved against every budget that
applies, so concurrent requests cannot overshoot as check-then-add budgets do (LiteLLM's
`max_budget`, its issues #26672 and #40095). At the task's end the reservation settles to what
the provider charged, or is released (failed, cancelled). `Ledger` holds the rules; the entity
workflow (workflows.ledger) makes it durable and serializes every change per tenant.

Windows are calendar UTC days and months. A reservation counts in the windows of the moment it
was made, and so does what it settles to: spent + reserved of a window never exceeds its limit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from gptimage2 import VideoParams, profile_for

from .models import GenerationSpec
from .presets import draft_params

# Per-user-day spend and settled reservation ids are kept this many days (a reservation settles
# within a generation's job TTL; an idempotent repeat of a POST comes within minutes).
RECENT_DAYS = 3
# Usage rows (GET /v1/usage) and daily totals are kept this long, then dropped with the state.
USAGE_DAYS = 100
MONTHS_KEPT = 24
# A generation's first reservation is made by the API before it starts the generation. If no
# generation claimed it after this long (the start failed, or the API died in between), the
# ledger asks Temporal whether the generation exists and releases the reservation if not.
UNCLAIMED_EXPIRY = timedelta(minutes=10)
# The worker's activity (activities.ledger) that answers which generation workflows exist.
STARTED_GENERATIONS = "started_generations"


class BudgetName(StrEnum):
    DAILY = "daily"
    MONTHLY = "monthly"
    USER_DAILY = "user_daily"


class TenantBudget(BaseModel):
    """A tenant's limits in credits; None = no limit of that kind. Soft limits only alert."""

    model_config = {"extra": "forbid"}

    daily: float | None = Field(None, ge=0, description="hard limit per UTC day")
    monthly: float | None = Field(None, ge=0, description="hard limit per UTC calendar month")
    per_user_daily: float | None = Field(None, ge=0, description="hard limit per user and UTC day")
    soft_daily: float | None = Field(None, ge=0, description="alert when a day's spend crosses it")
    soft_monthly: float | None = Field(None, ge=0, description="alert when a month's spend crosses it")

    @model_validator(mode="after")
    def _soft_below_hard(self) -> TenantBudget:
        for soft, hard in (("soft_daily", "daily"), ("soft_monthly", "monthly")):
            low, high = getattr(self, soft), getattr(self, hard)
            if low is not None and high is not None and low > high:
                raise ValueError(f"{soft} must not exceed {hard}")
        return self


def day_key(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def month_key(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def resets_at(name: BudgetName, now: datetime) -> datetime:
    """When the window `now` is in ends (UTC midnight; the first of next month)."""
    today = now.astimezone(UTC).date()
    if name is BudgetName.MONTHLY:
        first = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
        return datetime(first.year, first.month, 1, tzinfo=UTC)
    tomorrow = today + timedelta(days=1)
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC)


def ledger_workflow_id(tenant: str) -> str:
    return f"budget-{tenant}"


def reservation_id(generation_id: str, create_number: int) -> str:
    """The reservation of a generation's Nth provider task (drafts and retries count): the API
    reserves number 1 before starting the generation, so a repeated POST finds it again."""
    return f"{generation_id}/{create_number}"


def estimate_credits(params: VideoParams) -> float:
    """What a task of `params` reserves at the provider: the model's billing rule."""
    profile = profile_for(params.model)
    if profile is None:
        raise ValueError(f"no billing rule for model {params.model!r}")
    return round(profile.billing.credits(params), 4)


def first_create_params(spec: GenerationSpec) -> VideoParams:
    """The parameters of a generation's first provider task: its draft's, if it drafts first."""
    return draft_params(spec) if spec.draft_first else spec.params


class ReserveRequest(BaseModel):
    reservation_id: str
    generation_id: str
    user_id: str
    scenario: str
    model: str
    credits: float = Field(ge=0)
    first: bool = False  # the generation's first task: counts one generation in usage
    # The tenant's budget as configured where the request came from (the API's settings); None
    # from the worker, which keeps the ledger's own.
    configured: TenantBudget | None = None


class SettleRequest(BaseModel):
    reservation_id: str
    charged: float = Field(ge=0)  # 0 releases the reservation
    delivered: bool = False  # the task completed with the generation's final result
    # Enough to book a charge whose reservation the ledger no longer holds.
    user_id: str = ""
    scenario: str = ""
    model: str = ""


class AdjustRequest(BaseModel):
    """The provider reserved `credits` for the task of a reservation (`usage.credits_reserved`,
    known once the task exists): the reservation holds that, not the estimate."""

    reservation_id: str
    credits: float = Field(ge=0)


class WindowState(BaseModel):
    budget: BudgetName
    window: str  # "2026-11-30", "2026-11", or "user-1 2026-11-30"
    limit: float | None
    soft_limit: float | None = None
    spent: float
    reserved: float
    resets_at: datetime

    @property
    def remaining(self) -> float | None:
        return None if self.limit is None else max(0.0, round(self.limit - self.spent - self.reserved, 4))


class BudgetRefusal(BaseModel):
    """Why a reservation was refused: the 402's body and the `budget` failure's message."""

    budget: BudgetName
    limit: float
    spent: float
    reserved: float
    requested: float
    resets_at: datetime

    def message(self) -> str:
        return (
            f"the {self.budget.value} budget of {self.limit:g} credits would be exceeded: {self.spent:g} "
            f"spent and {self.reserved:g} reserved, {self.requested:g} more requested; it resets at "
            f"{self.resets_at.isoformat()}"
        )


class ReserveResult(BaseModel):
    granted: bool
    repeat: bool = False  # this reservation id was seen before: nothing new was reserved
    refusal: BudgetRefusal | None = None
    windows: list[WindowState] = Field(default_factory=list)
    soft_crossed: list[str] = Field(default_factory=list)


class Reservation(BaseModel):
    id: str
    generation_id: str
    user_id: str
    scenario: str
    model: str
    credits: float
    at: datetime
    # False for a generation's first reservation until the generation shows it exists (another
    # call of it reaches the ledger, or Temporal knows the workflow); see UNCLAIMED_EXPIRY.
    claimed: bool = True


class UsageRow(BaseModel):
    day: str
    user_id: str
    scenario: str
    model: str
    charged: float = 0.0
    refunded: float = 0.0  # reserved, then released or charged for less
    generations: int = 0
    delivered: int = 0

    def key(self) -> str:
        return usage_key(self.day, self.user_id, self.scenario, self.model)


def usage_key(day: str, user_id: str, scenario: str, model: str) -> str:
    return "\x00".join((day, user_id, scenario, model))


class LedgerState(BaseModel):
    """Everything the ledger knows; the entity workflow carries it through continue-as-new."""

    tenant: str
    configured: TenantBudget | None = None
    override: TenantBudget | None = None  # set by the admin API; wins over `configured`
    spent_by_day: dict[str, float] = Field(default_factory=dict)
    spent_by_month: dict[str, float] = Field(default_factory=dict)
    spent_by_user_day: dict[str, float] = Field(default_factory=dict)  # "user day"
    spent_total: float = 0.0
    open: dict[str, Reservation] = Field(default_factory=dict)
    settled: dict[str, str] = Field(default_factory=dict)  # reservation id -> day it settled
    usage: dict[str, UsageRow] = Field(default_factory=dict)
    soft_crossed: list[str] = Field(default_factory=list)  # windows whose soft limit was crossed
    soft_crossings: int = 0


class LedgerSummary(BaseModel):
    tenant: str
    budget: TenantBudget | None
    override: TenantBudget | None = None  # set by the admin API (then it is `budget`)
    windows: list[WindowState]
    spent_total: float
    open_reservations: int
    soft_crossings: int


class UsageGroupBy(StrEnum):
    SCENARIO = "scenario"
    MODEL = "model"
    USER = "user"
    DAY = "day"


class UsageGroup(BaseModel):
    key: str
    credits_charged: float = 0.0
    credits_reserved: float = 0.0
    credits_refunded: float = 0.0
    generations: int = 0
    delivered: int = 0
    credits_per_successful_output: float | None = None


def _user_window(user_id: str, day: str) -> str:
    return f"{user_id} {day}"


class Ledger:
    """The rules over a `LedgerState`. Every method takes the time it runs at (workflow time
    in the entity workflow), so the same calls give the same state on replay."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state

    @property
    def budget(self) -> TenantBudget | None:
        return self.state.override or self.state.configured

    def windows(self, now: datetime, user_id: str | None = None) -> list[WindowState]:
        budget = self.budget or TenantBudget()
        day, month = day_key(now), month_key(now)
        state = self.state
        held_day = held_month = held_user = 0.0
        for reservation in state.open.values():
            if month_key(reservation.at) == month:
                held_month += reservation.credits
                if day_key(reservation.at) == day:
                    held_day += reservation.credits
                    if reservation.user_id == user_id:
                        held_user += reservation.credits

        def window(
            name: BudgetName, key: str, limit: float | None, soft: float | None, spent: float, held: float
        ) -> WindowState:
            return WindowState(
                budget=name,
                window=key,
                limit=limit,
                soft_limit=soft,
                spent=round(spent, 4),
                reserved=round(held, 4),
                resets_at=resets_at(name, now),
            )

        found = [
            window(
                BudgetName.DAILY,
                day,
                budget.daily,
                budget.soft_daily,
                state.spent_by_day.get(day, 0.0),
                held_day,
            ),
            window(
                BudgetName.MONTHLY,
                month,
                budget.monthly,
                budget.soft_monthly,
                state.spent_by_month.get(month, 0.0),
                held_month,
            ),
        ]
        if user_id is not None:
            key = _user_window(user_id, day)
            spent = state.spent_by_user_day.get(key, 0.0)
            found.append(window(BudgetName.USER_DAILY, key, budget.per_user_daily, None, spent, held_user))
        return found

    def reserve(self, request: ReserveRequest, now: datetime) -> ReserveResult:
        state = self.state
        if request.configured is not None:
            state.configured = request.configured
        if request.reservation_id in state.open or request.reservation_id in state.settled:
            return ReserveResult(granted=True, repeat=True, windows=self.windows(now, request.user_id))
        windows = self.windows(now, request.user_id)
        for window in windows:
            if (
                window.limit is not None
                and window.spent + window.reserved + request.credits > window.limit + 1e-9
            ):
                refusal = BudgetRefusal(
                    budget=window.budget,
                    limit=window.limit,
                    spent=window.spent,
                    reserved=window.reserved,
                    requested=request.credits,
                    resets_at=window.resets_at,
                )
                return ReserveResult(granted=False, refusal=refusal, windows=windows)
        state.open[request.reservation_id] = Reservation(
            id=request.reservation_id,
            generation_id=request.generation_id,
            user_id=request.user_id,
            scenario=request.scenario,
            model=request.model,
            credits=request.credits,
            at=now,
            claimed=not request.first,
        )
        if not request.first:
            self.claim_generation(request.generation_id)
        if request.first:
            self._row(day_key(now), request.user_id, request.scenario, request.model).generations += 1
        after = self.windows(now, request.user_id)
        crossed = []
        for before, window in zip(windows, after, strict=True):
            soft = window.soft_limit
            key = f"{window.budget.value} {window.window}"
            used = window.spent + window.reserved
            if (
                soft is not None
                and used >= soft > before.spent + before.reserved
                and key not in state.soft_crossed
            ):
                state.soft_crossed.append(key)
                state.soft_crossings += 1
                crossed.append(key)
        return ReserveResult(granted=True, windows=after, soft_crossed=crossed)

    def settle(self, request: SettleRequest, now: datetime) -> bool:
        """Books what a reservation came to; False for a repeat (nothing changes)."""
        state = self.state
        if request.reservation_id in state.settled:
            return False
        reservation = state.open.pop(request.reservation_id, None)
        if reservation is None:
            # Unknown here (the state was reset, or a worker settled before the API's reserve
            # landed): the charge still counts, today.
            reservation = Reservation(
                id=request.reservation_id,
                generation_id="",
                user_id=request.user_id,
                scenario=request.scenario,
                model=request.model,
                credits=request.charged,
                at=now,
            )
        day, month = day_key(reservation.at), month_key(reservation.at)
        charged = request.charged
        state.spent_by_day[day] = round(state.spent_by_day.get(day, 0.0) + charged, 4)
        state.spent_by_month[month] = round(state.spent_by_month.get(month, 0.0) + charged, 4)
        user_window = _user_window(reservation.user_id, day)
        state.spent_by_user_day[user_window] = round(
            state.spent_by_user_day.get(user_window, 0.0) + charged, 4
        )
        state.spent_total = round(state.spent_total + charged, 4)
        row = self._row(day, reservation.user_id, reservation.scenario, reservation.model)
        row.charged = round(row.charged + charged, 4)
        row.refunded = round(row.refunded + max(0.0, reservation.credits - charged), 4)
        row.delivered += int(request.delivered)
        state.settled[request.reservation_id] = day_key(now)
        return True

    def adjust(self, request: AdjustRequest) -> bool:
        """The held reservation becomes the provider's own figure (more or less than the
        estimate); False if it is not held any more (settled, or unknown) or already that."""
        reservation = self.state.open.get(request.reservation_id)
        if reservation is None:
            return False
        reservation.claimed = True
        if reservation.credits == request.credits:
            return False
        reservation.credits = request.credits
        return True

    def claim_generation(self, generation_id: str) -> None:
        """The generation exists: its first reservation is no longer at risk of expiring."""
        for reservation in self.state.open.values():
            if reservation.generation_id == generation_id and not reservation.claimed:
                reservation.claimed = True

    def next_expiry(self) -> datetime | None:
        """When the oldest unclaimed reservation is due for a check (UNCLAIMED_EXPIRY)."""
        unclaimed = [r.at for r in self.state.open.values() if not r.claimed]
        return min(unclaimed) + UNCLAIMED_EXPIRY if unclaimed else None

    def expiring(self, now: datetime) -> list[Reservation]:
        return [r for r in self.state.open.values() if not r.claimed and r.at + UNCLAIMED_EXPIRY <= now]

    def expire(self, reservation_ids: Iterable[str], started: Iterable[str]) -> list[str]:
        """The checked reservations: those of a generation that exists are claimed, the others
        released (refunded, and their generation no longer counted). Not remembered as
        settled: a late POST of the same intent reserves again, and a generation that settles
        one anyway is booked as an unknown reservation is. Returns the released ids."""
        started_ids, released = set(started), []
        for rid in reservation_ids:
            reservation = self.state.open.get(rid)
            if reservation is None or reservation.claimed:
                continue
            if reservation.generation_id in started_ids:
                reservation.claimed = True
                continue
            del self.state.open[rid]
            row = self._row(
                day_key(reservation.at), reservation.user_id, reservation.scenario, reservation.model
            )
            row.refunded = round(row.refunded + reservation.credits, 4)
            row.generations = max(0, row.generations - 1)
            released.append(rid)
        return released

    def set_override(self, budget: TenantBudget | None) -> None:
        self.state.override = budget

    def summary(self, now: datetime) -> LedgerSummary:
        return LedgerSummary(
            tenant=self.state.tenant,
            budget=self.budget,
            override=self.state.override,
            windows=self.windows(now),
            spent_total=self.state.spent_total,
            open_reservations=len(self.state.open),
            soft_crossings=self.state.soft_crossings,
        )

    def usage(self, query: UsageQuery) -> UsageAnswer:
        """Usage rows of the days in the query, and the reservations made on them still open."""
        first, last = query.first_day.isoformat(), query.last_day.isoformat()
        return UsageAnswer(
            rows=[row for row in self.state.usage.values() if first <= row.day <= last],
            open=[r for r in self.state.open.values() if first <= day_key(r.at) <= last],
        )

    def prune(self, now: datetime) -> None:
        """Drops what no rule needs any more, so the state carried by continue-as-new stays small."""
        state = self.state
        today = now.astimezone(UTC).date()
        recent = (today - timedelta(days=RECENT_DAYS)).isoformat()
        oldest_day = (today - timedelta(days=USAGE_DAYS)).isoformat()
        oldest_month = month_key(now - timedelta(days=31 * MONTHS_KEPT))
        state.settled = {k: d for k, d in state.settled.items() if d >= recent}
        state.spent_by_user_day = {
            k: v for k, v in state.spent_by_user_day.items() if k.rsplit(" ", 1)[1] >= recent
        }
        state.spent_by_day = {k: v for k, v in state.spent_by_day.items() if k >= oldest_day}
        state.spent_by_month = {k: v for k, v in state.spent_by_month.items() if k >= oldest_month}
        state.usage = {k: row for k, row in state.usage.items() if row.day >= oldest_day}
        state.soft_crossed = [k for k in state.soft_crossed if k.split(" ")[-1] >= oldest_month]

    def _row(self, day: str, user_id: str, scenario: str, model: str) -> UsageRow:
        key = usage_key(day, user_id, scenario, model)
        row = self.state.usage.get(key)
        if row is None:
            row = self.state.usage[key] = UsageRow(day=day, user_id=user_id, scenario=scenario, model=model)
        return row


class UsageQuery(BaseModel):
    first_day: date
    last_day: date


class UsageAnswer(BaseModel):
    rows: list[UsageRow]
    open: list[Reservation]


def _group_key(group_by: UsageGroupBy, day: str, user_id: str, scenario: str, model: str) -> str:
    return {
        UsageGroupBy.DAY: day,
        UsageGroupBy.USER: user_id,
        UsageGroupBy.SCENARIO: scenario,
        UsageGroupBy.MODEL: model,
    }[group_by]


def group_usage(answer: UsageAnswer, group_by: UsageGroupBy) -> list[UsageGroup]:
    """The ledger's rows folded by one dimension, sorted by key."""
    groups: dict[str, UsageGroup] = defaultdict(lambda: UsageGroup(key=""))
    for row in answer.rows:
        group = groups[_group_key(group_by, row.day, row.user_id, row.scenario, row.model)]
        group.credits_charged += row.charged
        group.credits_refunded += row.refunded
        group.generations += row.generations
        group.delivered += row.delivered
    for reservation in answer.open:
        key = _group_key(
            group_by, day_key(reservation.at), reservation.user_id, reservation.scenario, reservation.model
        )
        groups[key].credits_reserved += reservation.credits
    out = []
    for key, group in sorted(groups.items()):
        group.key = key
        for name in ("credits_charged", "credits_reserved", "credits_refunded"):
            setattr(group, name, round(getattr(group, name), 4))
        if group.delivered:
            group.credits_per_successful_output = round(group.credits_charged / group.delivered, 4)
        out.append(group)
    return out


def total_spent(summaries: Iterable[LedgerSummary]) -> float:
    return round(sum(summary.spent_total for summary in summaries), 4)
