"""Which revision of the workflow code wrote a workflow task: branching on it changes commands
at no cost in events.

Why not `workflow.patched` for the changes gated here: a patch records a marker and upserts the
`TemporalChangeVersion` search attribute in every run that takes it (sdk-core's
`patch_state_machine.rs` synthesises the upsert), two events on the callback happy path, whose
whole budget is 20 (issue 15). Changes on rare paths keep using `workflow.patched`
(workflows/generation.py, PATCH_*).

How: every worker stamps the workflow tasks it completes with a deployment version whose build
id names REVISION (worker.build_worker; `use_worker_versioning=False`, so nothing about task
routing changes). `workflow.info().get_current_deployment_version()` answers, for a task being
replayed, the version recorded in its WorkflowTaskCompleted event, and for a new task this
worker's: the SDK documents it as deterministic and safe to branch on. A task completed before
revision 2 carries the SDK's default build id (a hash of the loaded modules, every history in
tests/histories has one) and reads as revision 1, so old histories replay their old commands; an
old worker that completes a task of a newer run stamps it with its hash, and the newer code then
replays that task as revision 1 too. A server that records no version (the time-skipping test
server) answers None or an empty version on replay, where the live answer was this worker's
own: that reads as REVISION. Temporal Server records a task's build id (`workerVersion`) since
1.21, and the deployment's name since worker deployments came (1.32 here records both;
docker-compose.yml runs 1.30.1); a build id without its name is read the same.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkerDeploymentVersion

DEPLOYMENT_NAME = "reliable-video"
_BUILD_PREFIX = "workflows-r"
# Bump when a change of commands is gated on `task_revision() >= N`; never lower it.
REVISION = 2
# Revision 2, the callback happy path in 20 events (workflows/generation.py): the run's first
# create is a local activity in its first workflow task, and `rehosting` is not upserted on its own.
LEAN_HAPPY_PATH = 2
# Revision 2 too: with a webhook plan, the immediate attempt at each event is the generation's own
# (a local activity), and a delivery workflow starts only for an event it did not settle (before:
# one per event). Every run with a plan takes it: a patch would add two events to each.
WEBHOOK_FIRST_ATTEMPT = 2


def deployment_version(revision: int = REVISION) -> WorkerDeploymentVersion:
    """The version every worker stamps its workflow tasks with."""
    return WorkerDeploymentVersion(deployment_name=DEPLOYMENT_NAME, build_id=f"{_BUILD_PREFIX}{revision}")


def revision_of(version: WorkerDeploymentVersion | None) -> int:
    """The revision a task's recorded version names: REVISION when none was recorded (a server
    that keeps none, where the live answer was this worker's own), 1 for any other build id
    (the SDK's default hash, written before revisions existed)."""
    if version is None or not (version.deployment_name or version.build_id):
        return REVISION
    # A server that keeps the build id but not the deployment's name answers it without the name.
    if version.deployment_name in ("", DEPLOYMENT_NAME) and version.build_id.startswith(_BUILD_PREFIX):
        number = version.build_id.removeprefix(_BUILD_PREFIX)
        if number.isdigit():
            return int(number)
    return 1


def task_revision() -> int:
    """In workflow code: the revision of the code that ran (or, live, runs) the current task."""
    return revision_of(workflow.info().get_current_deployment_version())
