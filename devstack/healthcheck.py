"""Container health probes used by docker-compose: `python -m devstack.healthcheck api|worker`.

- api: `GET /healthz` on the port inside the container answers 200.
- worker: this container's worker is polling its task queue. The SDK's default worker
  identity is "pid@hostname" and a container's hostname is its own, so a poller whose identity
  ends in "@<hostname>" is this replica, not a sibling.

Exit status 0 means healthy; anything else is printed to stderr for `docker inspect`.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import urllib.request
from datetime import timedelta

from devstack.exits import run_main

API_HEALTH_URL = "http://127.0.0.1:8000/healthz"


def check_api(url: str = API_HEALTH_URL) -> None:
    with urllib.request.urlopen(url, timeout=3) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


async def check_worker() -> None:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from settings import get_settings
    from temporal_client import connect

    settings = get_settings()
    client = await connect(settings)
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace,
            task_queue=TaskQueue(name=settings.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        ),
        timeout=timedelta(seconds=5),
    )
    suffix = f"@{socket.gethostname()}"
    if not any(poller.identity.endswith(suffix) for poller in response.pollers):
        raise RuntimeError(f"no poller from this container on task queue {settings.task_queue}")


def main(argv: list[str]) -> int:
    if argv not in (["api"], ["worker"]):
        print("usage: python -m devstack.healthcheck api|worker", file=sys.stderr)
        return 2
    try:
        if argv == ["api"]:
            check_api()
        else:
            asyncio.run(check_worker())
    except Exception as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_main(lambda: main(sys.argv[1:]))
