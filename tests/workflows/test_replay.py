"""Determinism: recorded histories of the generation workflow replay against today's code.

`tests/histories/*.json` are histories recorded from real runs, one of each kind in RECORDED: a
delivered generation, a policy failure, transient retries, an ambiguous create, a generation
found by polling with every callback dropped, a task the provider forgot (its read refused 404),
a draft with a retry and an adopted orphan, an unknown create ops resolved by hand (recorded by
tests/workflows/test_unresolved_create.py), a budgeted generation (its task settled on the
ledger), one whose retry the budget refused and one whose reservation became the provider's
own figure (tests/api/test_budgets.py), a callback that
reached the workflow before its create's answer (tests/workflows/test_history_cost.py), a draft
whose webhook events each went to a delivery workflow of their own (`webhooks-children`, before
the generation made the immediate attempt itself), a draft whose immediate attempts were all
accepted and a generation whose immediate attempt failed and went on in a delivery workflow
(tests/webhooks/), and from revision 2 (workflows/revision.py) a delivered run whose first
create was inline and one whose first workflow task was retried after its worker was killed
mid-create (tests/workflows/test_inline_create.py). A change that would break running workflows
fails here; guard such changes with `workflow.patched()`, or on the happy path with a revision.
Record new ones with `RECORD_HISTORIES=1 pytest tests/workflows/test_replay.py
tests/workflows/test_read_failures.py tests/workflows/test_task_id_search.py
tests/api/test_budgets.py tests/workflows/test_history_cost.py tests/workflows/test_inline_create.py
tests/webhooks` (every
test that calls `tests.helpers.flow.assert_replays` records), then keep the files you mean to keep.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from devstack.testbed import Testbed
from tests.helpers.flow import HISTORIES, assert_replays, finished, prompt, replayer, start
from workflows.models import GenerationStatus, RetryBudget


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    recorded = json.loads(path.read_text())
    # Under the id it ran with: a generation's delivery workflows are named after it.
    started = recorded["events"][0]["workflowExecutionStartedEventAttributes"]
    history = WorkflowHistory.from_json(started.get("workflowId", path.stem), recorded)
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


RECORDED = {
    "delivered",
    "policy",
    "transient-retry",
    "ambiguous-create",
    "polled",
    "read-refused-404",
    "draft-retry-orphan",
    "resolved-create",
    "budget-delivered",
    "budget-over-on-retry",
    "budget-adjusted",
    "callback-during-create",
    "inline-delivered",
    "inline-create-retried",
    "webhooks-children",
    "webhooks-draft",
    "webhooks-retried",
}


def test_histories_are_recorded() -> None:
    """The kinds this module's docstring promises are on disk (`<kind>-<6 hex>.json`), and no
    other kind is."""
    assert {path.stem.rsplit("-", 1)[0] for path in HISTORIES.glob("*.json")} == RECORDED


@pytest.mark.parametrize(
    ("name", "directives", "budget", "status"),
    [
        ("delivered", ("#dupcallback",), None, GenerationStatus.DELIVERED),
        ("policy", ("#policy",), None, GenerationStatus.FAILED),
        (
            "transient-retry",
            ("#fail=service_errorx1",),
            RetryBudget(max_attempts=2),
            GenerationStatus.DELIVERED,
        ),
        ("ambiguous-create", ("#lost-response",), None, GenerationStatus.DELIVERED),
        ("polled", ("#nocallback",), None, GenerationStatus.DELIVERED),
    ],
)
async def test_fresh_histories_replay(
    stack: Testbed,
    name: str,
    directives: tuple[str, ...],
    budget: RetryBudget | None,
    status: GenerationStatus,
) -> None:
    started = await start(stack, prompt("Replay me", *directives), quality="480p", duration=4, budget=budget)
    view = await finished(stack, started.view.id)
    assert view.status is status
    await assert_replays(stack, started.view.id, name)
