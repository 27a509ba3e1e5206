"""The production compose file, checked without a Docker engine: it follows the compose spec,
hangs together (dependencies, health, one-shot jobs), configures every setting the app reads,
keeps secrets in env files, and registers exactly the search attributes the code upserts."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr, ValidationError
from temporalio import workflow

from devstack import healthcheck
from devstack.ports import free_port
from devstack.processes import find_binary
from devstack.temporal_server import TemporalDevServer, registered_search_attributes, search_attribute_types
from settings import DEV_ENVIRONMENT, Settings, get_settings
from temporal_client import CODEC_PATH, connect
from tests.helpers import assert_eventually
from worker import build_worker

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
APP_SERVICES = ("api", "worker")
# Settings whose default is "off" or "derive it" and so is right in production as well.
OPTIONAL_WHEN_UNSET = {"gptimage2_ca_file", "result_hosts", "cdn_base_url", "allowed_private_hosts"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


@pytest.fixture(scope="module")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    # No search attributes at start: the compose job under test must register them itself.
    server = TemporalDevServer.start(
        tmp_path_factory.mktemp("temporal"), headless=True, persistent=False, search_attributes=[]
    )
    try:
        server.wait_ready(timeout=60)
        yield server
    finally:
        server.stop()


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def env_file_keys(service: dict[str, Any]) -> set[str]:
    """Keys of the service's env files, read from their committed `.example` templates."""
    keys: set[str] = set()
    files = service.get("env_file") or []
    for entry in [files] if isinstance(files, str) else files:
        path = entry if isinstance(entry, str) else entry["path"]
        template = REPO_ROOT / f"{path}.example"
        assert template.is_file(), f"{path} has no committed template {template.name}"
        for line in template.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                keys.add(line.split("=", 1)[0])
    return keys


def test_compose_file_follows_the_compose_spec() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dependency_exists_and_is_started_with_the_service(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target in service.get("depends_on") or {}:
            assert target in services, f"{name} depends on undefined service {target}"
            # A service in no profile must not wait for one that only starts with a profile.
            if not service.get("profiles"):
                assert not services[target].get("profiles"), f"{name} depends on profiled {target}"


def test_conditions_match_what_the_dependency_offers(services: dict[str, Any]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, rule in depends.items():
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, it has none"
            elif condition == "service_completed_successfully":
                assert str(services[target].get("restart", "no")).startswith(("no", "on-failure")), (
                    f"{target} is a one-shot job, it must not restart forever"
                )


def test_app_services_are_healthchecked_and_wait_for_setup(services: dict[str, Any]) -> None:
    for name in (*APP_SERVICES, "postgresql", "temporal", "minio"):
        assert "healthcheck" in services[name], name
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["temporal-setup"]["condition"] == "service_completed_successfully"
        assert depends["minio-setup"]["condition"] == "service_completed_successfully"


def test_worker_replicas_are_settable(services: dict[str, Any]) -> None:
    assert services["worker"]["deploy"]["replicas"] == "${WORKER_REPLICAS:-2}"
    assert "container_name" not in services["worker"], "a fixed name forbids replicas"


def test_simulator_only_runs_in_the_demo_profile(services: dict[str, Any]) -> None:
    assert services["simulator"]["profiles"] == ["demo"]
    assert [name for name, service in services.items() if service.get("profiles")] == ["simulator"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_sets_every_setting(services: dict[str, Any], name: str) -> None:
    service = services[name]
    provided = set(environment(service)) | env_file_keys(service)
    missing = [
        field.upper()
        for field in Settings.model_fields
        if field not in OPTIONAL_WHEN_UNSET and field.upper() not in provided
    ]
    # Settings' own defaults point at the local dev stack (127.0.0.1), wrong in a container.
    assert not missing, f"{name} leaves these to their dev-stack defaults: {missing}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_secrets_come_from_env_files_only(services: dict[str, Any], name: str) -> None:
    secret_names = {
        field.upper() for field, info in Settings.model_fields.items() if info.annotation is SecretStr
    }
    assert secret_names >= {"GPTIMAGE2_API_KEY", "CALLBACK_SECRET", "S3_SECRET_KEY", "API_KEYS"}
    service = services[name]
    assert not secret_names & set(environment(service)), "secrets written into docker-compose.yml"
    assert secret_names <= env_file_keys(service)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_production_never_allows_private_hosts(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert "ALLOWED_PRIVATE_HOSTS" not in environment(service)
    assert "ALLOWED_PRIVATE_HOSTS" not in env_file_keys(service)


def test_infrastructure_env_file_has_every_password(services: dict[str, Any]) -> None:
    keys = env_file_keys(services["temporal"])
    assert {"POSTGRES_PASSWORD", "POSTGRES_PWD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} <= keys


def test_real_env_files_stay_out_of_git_and_images() -> None:
    assert "*.env" in (REPO_ROOT / "deploy" / ".gitignore").read_text().split()
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {"deploy/*.env", ".env", ".local", ".venv", ".git"} <= set(ignored)


def test_third_party_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = str(service["image"])
        assert ":" in image and not image.endswith(":latest"), f"{name} uses an unpinned image {image}"


def test_registered_search_attributes_match_the_module(services: dict[str, Any]) -> None:
    pairs = environment(services["temporal-setup"])["SEARCH_ATTRIBUTES"].split()
    registered = dict(pair.split("=", 1) for pair in pairs)
    expected = search_attribute_types()
    assert registered == expected, "update SEARCH_ATTRIBUTES in docker-compose.yml to: " + " ".join(
        f"{name}={kind}" for name, kind in expected.items()
    )


def test_dockerfile_builds_a_slim_non_root_image() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "pip install" in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


def test_setup_scripts_are_valid_shell() -> None:
    for script in sorted((REPO_ROOT / "deploy").rglob("*.sh")):
        assert os.access(script, os.X_OK), f"{script} is not executable"
        result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_setup_job_creates_namespace_and_search_attributes_once(
    services: dict[str, Any], temporal: TemporalDevServer
) -> None:
    """Runs the compose job's script against a real server, twice (a rerun must be harmless)."""
    namespace = f"prod-{uuid.uuid4().hex[:8]}"
    job = services["temporal-setup"]
    env = {
        "PATH": f"{Path(find_binary('temporal')).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "TEMPORAL_ADDRESS": temporal.address,
        "TEMPORAL_NAMESPACE": namespace,
        "TEMPORAL_NAMESPACE_RETENTION": "72h",
        "SEARCH_ATTRIBUTES": environment(job)["SEARCH_ATTRIBUTES"],
    }
    script = REPO_ROOT / "deploy" / "temporal" / "setup-namespace.sh"
    for run in ("first", "second"):
        result = subprocess.run(
            ["sh", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, f"{run} run: {result.stdout}{result.stderr}"
    assert "exists" in result.stdout
    assert registered_search_attributes(temporal.address, namespace) == search_attribute_types()


def test_api_healthcheck_fails_when_nothing_answers() -> None:
    assert healthcheck.main(["bogus"]) == 2
    with pytest.raises(OSError):
        healthcheck.check_api(f"http://127.0.0.1:{free_port()}/healthz")


async def test_worker_healthcheck_sees_only_this_hosts_worker(
    temporal: TemporalDevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_queue = f"health-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal.address)
    monkeypatch.setenv("TASK_QUEUE", task_queue)
    get_settings.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="no poller"):
            await healthcheck.check_worker()
        # Connected and built as `python worker.py` does, with a workflow that is never run.
        client = await connect(get_settings())
        assert client.identity.endswith(f"@{socket.gethostname()}")
        async with build_worker(client, task_queue, [], workflows=[NoopWorkflow]):
            # The first poll goes out shortly after the worker starts.
            async def polled() -> bool:
                try:
                    await healthcheck.check_worker()
                except RuntimeError as err:
                    raise AssertionError(str(err)) from err
                return True

            await assert_eventually(polled, within=15, every=0.2, what="the worker's first poll")
    finally:
        get_settings.cache_clear()


@workflow.defn
class NoopWorkflow:
    @workflow.run
    async def run(self) -> None:
        return None


def compose_default(value: str) -> str:
    """`${NAME:-default}` -> `default`; a plain value as it is."""
    match = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", value)
    return match.group(1) if match else value


def test_web_ui_decrypts_history_through_the_api_codec_endpoint(services: dict[str, Any]) -> None:
    ui, api = environment(services["temporal-ui"]), environment(services["api"])
    endpoint = urlsplit(compose_default(ui["TEMPORAL_CODEC_ENDPOINT"]))
    published = re.search(r"\$\{API_PORT:-(\d+)\}", services["api"]["ports"][0])
    assert published and endpoint.path == CODEC_PATH and endpoint.port == int(published.group(1))
    # The API grants CORS to the UI's origin only: it must be the origin the UI is served from.
    ui_url = compose_default(api["TEMPORAL_UI_URL"])
    assert ui_url in ui["TEMPORAL_CORS_ORIGINS"].split(",")
    assert compose_default(api["ENVIRONMENT"]) != DEV_ENVIRONMENT


def test_unedited_env_template_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVIRONMENT")
    values: dict[str, Any] = {}
    for line in (REPO_ROOT / "deploy" / "prod.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.lower()] = value
    values["history_encryption_keys"] = f"k:{base64.b64encode(b'k' * 32).decode()}"  # well-formed
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, **values)
    for name in ("GPTIMAGE2_API_KEY", "CALLBACK_SECRET", "S3_SECRET_KEY", "API_KEYS", "OPS_API_KEY"):
        assert name in str(raised.value)


_BLOCKED_IMPORTS = """
import importlib.abc, importlib.metadata, sys

allowed = set(sys.argv[1].split(","))
owners = importlib.metadata.packages_distributions()


class OnlyRuntimeDependencies(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.partition(".")[0]
        dists = {d.lower().replace("_", "-") for d in owners.get(top, ())}
        if dists and not dists & allowed:
            raise ModuleNotFoundError(f"No module named {top!r} (from {sorted(dists)}, not a runtime dependency)")
        return None


sys.meta_path.insert(0, OnlyRuntimeDependencies())
exec(sys.argv[2])
"""


def _runtime_distributions() -> set[str]:
    """The project and every distribution its `dependencies` need, transitively (extras only
    when asked for): what the image's `pip install -r` of those dependencies installs."""
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = [(Requirement(r), frozenset[str]()) for r in project["dependencies"]]
    found = {normal(project["name"])}
    while wanted:
        requirement, extras = wanted.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""})
        ):
            continue
        name = normal(requirement.name)
        if name in found:
            continue
        found.add(name)
        for line in importlib.metadata.requires(requirement.name) or []:
            wanted.append((Requirement(line), frozenset(requirement.extras)))
    return found


def test_the_image_runs_on_its_runtime_dependencies_alone() -> None:
    """The Dockerfile installs `project.dependencies` only, then imports every entry point:
    the same import check, here with every other installed distribution (pytest, the dev
    extra) made unimportable. A module the app needs from a dev-only package fails it."""
    # The check after `pip install --no-deps .`, run outside the source tree.
    check = re.search(r'cd / && python -c "(import [^"]+)"', (REPO_ROOT / "Dockerfile").read_text())
    assert check, "the Dockerfile's import check is gone"
    allowed = ",".join(sorted(_runtime_distributions()))
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORTS, allowed, check.group(1)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_real_install_carries_every_subpackage() -> None:
    """The image installs the project for real (`pip install --no-deps .`), not editable from
    the source tree as `make install` does: a subpackage the configuration leaves out (api.routers
    was) is missing there only."""
    import warnings

    from setuptools.config.pyprojecttoml import read_configuration

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setuptools calls its [tool.setuptools] support beta
        installed = set(read_configuration(REPO_ROOT / "pyproject.toml")["tool"]["setuptools"]["packages"])
    tops = {name for name in installed if "." not in name}
    in_tree = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for top in tops
        for init in (REPO_ROOT / top).rglob("__init__.py")
    }
    assert in_tree - installed == set()
