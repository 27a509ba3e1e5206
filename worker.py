"""Run a worker: `python worker.py`. Run as many as you like; Temporal spreads the work.

The worker hosts the generation workflow and the activities (provider calls on the event loop,
the blocking re-host in a thread pool so it never starves heartbeats).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.ledger import LedgerActivities
from activities.provider import ProviderActivities
from activities.rehost import RehostActivities
from activities.webhooks import WebhookActivities
from devstack.exits import run_main
from gptimage2 import GPTImage2Client
from netguard import GuardedClient
from settings import Settings, get_settings, outbound_trust
from storage import make_minio
from temporal_client import connect
from workflows.generation import VideoGenerationWorkflow
from workflows.ledger import BudgetLedgerWorkflow
from workflows.metrics import HISTOGRAM_BUCKETS
from workflows.revision import deployment_version
from workflows.webhook_delivery import WebhookDeliveryWorkflow, WebhookEndpointsWorkflow

logger = logging.getLogger("worker")

WORKFLOWS: tuple[type, ...] = (
    VideoGenerationWorkflow,
    BudgetLedgerWorkflow,
    WebhookDeliveryWorkflow,
    WebhookEndpointsWorkflow,
)
# Our workflow modules hold no mutable module state, so the sandbox may share them between runs
# instead of re-importing them for every new workflow (a fifth of the worker's CPU otherwise).
# The sandbox still checks every call the workflow makes at run time.
PASSTHROUGH_MODULES = ("workflows", "gptimage2", "pydantic")


def workflow_runner(workflows: Sequence[type]) -> SandboxedWorkflowRunner:
    """The sandbox, sharing PASSTHROUGH_MODULES and the registered workflows' own modules: a
    test's or a benchmark's workflow runs as the product's does (so it too must keep no
    mutable module state)."""
    modules = {*PASSTHROUGH_MODULES, *(w.__module__ for w in workflows)}
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*sorted(modules))
    )


def build_worker(
    client: Client,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    *,
    workflows: Sequence[type] = WORKFLOWS,
    executor: ThreadPoolExecutor | None = None,
) -> Worker:
    """The one way a worker is built: production (`product_worker`), and tests and benchmarks
    that register fake activities under the real names, so all of them run the same sandbox
    runner and shutdown rule. With `executor` (needed by synchronous activities), its size
    bounds concurrent activities."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows),
        workflow_runner=workflow_runner(workflows),
        activities=list(activities),
        activity_executor=executor,
        # On SIGTERM (deploys, `make down`) let in-flight re-hosts finish instead of cancelling
        # them; a re-host that outlives this is retried by another worker.
        graceful_shutdown_timeout=timedelta(seconds=30),
        # Provider calls are async and cheap; re-hosts hold a pool thread each, so the pool's
        # size bounds concurrent activities.
        max_concurrent_activities=executor._max_workers if executor else None,
        # Stamps each workflow task with the workflow code's revision, which workflow code
        # branches on where a patch would cost events (workflows/revision.py). Routing is as
        # without it: no worker versioning.
        deployment_config=WorkerDeploymentConfig(version=deployment_version(), use_worker_versioning=False),
    )


def product_worker(
    client: Client,
    settings: Settings,
    provider: GPTImage2Client,
    *,
    task_queue: str | None = None,
    executor: ThreadPoolExecutor,
) -> Worker:
    """The worker `python worker.py` runs: the generation workflow and the real activities."""
    provider_activities = ProviderActivities(
        provider,
        callback_base_url=settings.callback_base_url or None,
        callback_secret=settings.callback_secret.get_secret_value(),
        image_guard=GuardedClient(
            allowed_private_hosts=settings.allowed_private_hosts, verify=outbound_trust(settings)
        ),
    )
    rehost = RehostActivities(settings, make_minio(settings))
    queue = task_queue or settings.task_queue
    # Tenants' ledgers run on the generations' queue, which every worker serves.
    ledger = LedgerActivities(client, queue)
    webhooks = WebhookActivities(settings, client, make_minio(settings))
    worker = build_worker(
        client,
        queue,
        [
            provider_activities.create_task,
            provider_activities.get_task,
            provider_activities.cancel_task,
            rehost.rehost_result,
            ledger.reserve_credits,
            ledger.settle_credits,
            ledger.adjust_credits,
            ledger.started_generations,
            webhooks.deliver_webhook,
        ],
        executor=executor,
    )
    # The download pool lives as long as the worker that runs its activities.
    weakref.finalize(worker, rehost.close)
    return worker


def worker_runtime(metrics_bind: str) -> Runtime:
    """A runtime serving Prometheus metrics on `metrics_bind` (host:port, path /metrics): the
    SDK's own `temporal_*` (counters without `_total`, durations in ms, as Temporal's Core-SDK
    dashboard expects) and ours (workflows.metrics, with its histogram buckets)."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=metrics_bind, histogram_bucket_overrides=HISTOGRAM_BUCKETS)
        )
    )


def make_provider(settings: Settings) -> GPTImage2Client:
    return GPTImage2Client(
        settings.gptimage2_api_key.get_secret_value(),
        settings.gptimage2_base_url,
        verify=outbound_trust(settings),
    )


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a video generation worker.")
    parser.add_argument("--task-queue", default=None, help="defaults to TASK_QUEUE")
    parser.add_argument(
        "--metrics-bind",
        default=None,
        help="host:port for Prometheus metrics (default WORKER_METRICS_BIND, 127.0.0.1:9464; '' for none)",
    )
    parser.add_argument(
        "--rehost-threads", type=int, default=16, help="concurrent re-hosts (blocking S3 I/O)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    metrics_bind = settings.worker_metrics_bind if args.metrics_bind is None else args.metrics_bind
    runtime = worker_runtime(metrics_bind) if metrics_bind else None
    if runtime:
        logger.info("metrics at http://%s/metrics", metrics_bind)
    client = await connect(settings, runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=args.rehost_threads) as executor:
        async with make_provider(settings) as provider:
            worker = product_worker(client, settings, provider, task_queue=args.task_queue, executor=executor)
            async with worker:
                logger.info(
                    "worker polling task queue %s at %s", worker.task_queue, settings.temporal_address
                )
                await stop.wait()
                logger.info("shutting down: finishing in-flight tasks")


if __name__ == "__main__":
    # After the graceful shutdown in main(), skip interpreter teardown (see devstack.exits).
    run_main(lambda: asyncio.run(main()))
