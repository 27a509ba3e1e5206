"""devstack.parts: each part described once and consistently, so `up`, `status` and `down` can
be driven from the registry alone (the real processes are in tests/devstack/test_devstack.py)."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from unittest import mock

import pytest

from devstack.demo import TENANT_KEY
from devstack.parts import DEFAULT_PORTS, PARTS, PORT_ENV, Part
from devstack.state import GENERATED_SECRETS, Stack, StateDir
from settings import DEV_ENVIRONMENT, Settings


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    secrets = {name: f"{name.lower()}-value" for name in GENERATED_SECRETS}
    return Stack(state=StateDir(tmp_path), ports=dict(DEFAULT_PORTS), secrets=secrets)


def test_names_ports_and_variables_are_each_one_parts_alone() -> None:
    ports = [port for part in PARTS for port in part.ports]
    for values in (
        [p.name for p in PARTS],
        [p.name for p in ports],
        [p.default for p in ports],
        [p.env for p in ports],
    ):
        assert len(values) == len(set(values)), values
    assert all(re.fullmatch(r"DEV_[A-Z0-9_]+_PORT", port.env) for port in ports)
    assert list(DEFAULT_PORTS) == list(PORT_ENV) == [port.name for port in ports]


def test_an_app_is_found_again_by_its_marker(stack: Stack) -> None:
    """`down` stops a pid only if its cmdline shows the part's marker: every app's own command
    line must show it (the servers' markers are checked on real processes)."""
    apps = [part for part in PARTS if part.argv is not None]
    assert {part.name for part in apps} == {"simulator", "api", "worker"}
    for part in apps:
        assert part.argv is not None
        assert any(part.cmdline_marker in arg for arg in part.argv(stack)), part.name


def test_each_part_answers_on_its_own_ports(stack: Stack) -> None:
    """The URL `up` and `status` print for a part, and an app's --port, are the ports it was given."""
    moved_ports = {name: port + 1000 for name, port in DEFAULT_PORTS.items()}
    moved = Stack(state=stack.state, ports=moved_ports, secrets=stack.secrets)
    for part in PARTS:
        for port in part.ports:
            assert f":{moved.ports[port.name]}" in part.url(moved), (part.name, port.name)
        if part.argv is not None and part.ports:
            argv = part.argv(moved)
            # `--port N` (the API, the simulator) or `--metrics-bind host:N` (the worker).
            flags = ("--port", "--metrics-bind")
            given = [value.rpartition(":")[2] for flag, value in itertools.pairwise(argv) if flag in flags]
            assert given == [str(moved.ports[port.name]) for port in part.ports], part.name


def test_a_part_is_either_an_app_or_a_server() -> None:
    def nothing(stack: Stack, pid: int) -> bool:
        return True

    with pytest.raises(ValueError, match="part both: give exactly one"):
        Part("both", 0, "x", url=str, ready=nothing, argv=lambda s: [], launch=lambda s, p, e: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="part neither: give exactly one"):
        Part("neither", 0, "x", url=str, ready=nothing)


def test_the_apps_configuration_is_settings_defaults_for_the_dev_stack(stack: Stack) -> None:
    """What the Python parts read from Stack.app_env() validates as Settings, with the task
    queue, namespace, bucket and tenant keys of Settings' own defaults, and the demo's key in it."""
    with mock.patch.dict(os.environ, stack.app_env(), clear=True):
        settings = Settings(_env_file=None)
    default = Settings.model_construct()
    assert settings.environment == DEV_ENVIRONMENT
    assert settings.temporal_address == f"127.0.0.1:{DEFAULT_PORTS['temporal']}"
    assert (settings.task_queue, settings.temporal_namespace, settings.s3_bucket) == (
        default.task_queue,
        default.temporal_namespace,
        default.s3_bucket,
    )
    assert settings.tenant_keys() == default.tenant_keys()
    assert settings.tenant_keys()[TENANT_KEY] == "demo"
