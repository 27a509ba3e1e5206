"""Every command exits with its true status (devstack.exits): the starter against the real
stack, many times over, because the SDK's teardown race (sdk-python #300) struck 2 runs in 30
before; a clear line instead of a traceback when Temporal is not there; the dev stack's ports
found without configuration; and pytest's own exit."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Sequence
from pathlib import Path

import pytest

from devstack.parts import PORT_ENV
from devstack.ports import free_port, free_ports
from devstack.stack import with_stack_ports
from devstack.state import ConfigError, StateDir
from devstack.testbed import Testbed
from settings import Settings
from tests.helpers.flow import prompt, start

ROOT = Path(__file__).resolve().parent.parent
STARTER = [sys.executable, str(ROOT / "starter.py")]
# Starters in flight at once: each is ~0.5 s of CPU at startup, and the machine has 2 cores.
CONCURRENT = 4
STATUS_RUNS = 30
GENERATE_RUNS = 5
# What a process prints at interpreter teardown, which devstack.exits skips.
TEARDOWN_PROBE = """
import os
class Probe:
    def __del__(self, write=os.write):  # module globals may be gone by then
        write(2, b"teardown ran\\n")
probe = Probe()
"""


def base_env() -> dict[str, str]:
    """This environment without anything that would point a child at another stack."""
    names = {name.upper() for name in Settings.model_fields} | set(PORT_ENV.values()) | {"DEVSTACK_DIR"}
    return {name: value for name, value in os.environ.items() if name not in names}


async def run(argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def bounded(runs: Sequence[Awaitable[tuple[int, str, str]]]) -> list[tuple[int, str, str]]:
    gate = asyncio.Semaphore(CONCURRENT)

    async def one(coroutine: Awaitable[tuple[int, str, str]]) -> tuple[int, str, str]:
        async with gate:
            return await coroutine

    return await asyncio.gather(*(one(r) for r in runs))


def json_result(result: tuple[int, str, str]) -> dict[str, object]:
    code, out, err = result
    assert code == 0, f"exit {code}, stderr: {err[-2000:]}"
    view = json.loads(out)
    assert isinstance(view, dict)
    return view


async def test_starter_exits_zero_with_valid_json_every_time(stack: Testbed) -> None:
    env = {**base_env(), **stack.worker_env()}
    # Generations for `status` to describe, started here so every starter can run at once.
    existing = [(await start(stack, prompt(f"exit status target {n}"))).view.id for n in range(3)]
    run_id = uuid.uuid4().hex[:8]
    generate = [
        [
            *STARTER,
            *("generate", "--user", "exits-user", "--key", f"exits-{run_id}-{n}"),
            *("--prompt", prompt(f"exit status {n}"), "--wait", "--json"),
        ]
        for n in range(GENERATE_RUNS)
    ]
    status_ids = [existing[n % len(existing)] for n in range(STATUS_RUNS)]
    started = time.monotonic()
    results = await bounded(
        [run(argv, env) for argv in generate]
        + [run([*STARTER, "status", id_, "--json"], env) for id_ in status_ids]
    )
    elapsed = time.monotonic() - started
    views = [json_result(result) for result in results]
    assert [view["status"] for view in views[:GENERATE_RUNS]] == ["delivered"] * GENERATE_RUNS
    assert [view["id"] for view in views[GENERATE_RUNS:]] == status_ids
    print(
        f"{GENERATE_RUNS} generate --wait + {STATUS_RUNS} status runs, {CONCURRENT} at a time: {elapsed:.1f} s"
    )


def write_ports(tmp_path: Path, temporal_port: int) -> StateDir:
    state = StateDir(tmp_path / "state")
    state.root.mkdir()
    state.ports_file.write_text(json.dumps({"temporal": temporal_port, "temporal_ui": free_port()}))
    return state


async def test_starter_finds_the_running_stack_without_configuration(stack: Testbed, tmp_path: Path) -> None:
    """No TEMPORAL_ADDRESS: the stack's ports.json (as `make status` reads it) or DEV_TEMPORAL_PORT
    decides, from any directory."""
    port = int(stack.settings.temporal_address.rsplit(":", 1)[1])
    env = {name: value for name, value in stack.worker_env().items() if name != "TEMPORAL_ADDRESS"}
    env = {**base_env(), **env}
    state = write_ports(tmp_path, port)
    missing = f"gen-missing-{uuid.uuid4().hex[:8]}"
    from_file, from_variable = await asyncio.gather(
        run([*STARTER, "status", missing, "--json"], {**env, "DEVSTACK_DIR": str(state.root)}, tmp_path),
        run(
            [*STARTER, "status", missing, "--json"],
            {**env, "DEVSTACK_DIR": str(tmp_path / "none"), "DEV_TEMPORAL_PORT": str(port)},
            tmp_path,
        ),
    )
    # Temporal answered "no such workflow" (4); not reaching it would be 6.
    for code, out, err in (from_file, from_variable):
        assert (code, out, err) == (4, "", f"error: no generation {missing}\n")


@pytest.mark.parametrize("source", ["TEMPORAL_ADDRESS", "ports.json"])
async def test_no_temporal_is_one_clear_line_not_a_traceback(source: str, tmp_path: Path) -> None:
    port = free_port()  # nobody listens here
    env = {**base_env(), "DEVSTACK_DIR": str(write_ports(tmp_path, port).root)}
    if source == "TEMPORAL_ADDRESS":
        # Not the dev stack: the development defaults are allowed only when said so.
        env.update(TEMPORAL_ADDRESS=f"127.0.0.1:{port}", ENVIRONMENT="dev")
    code, out, err = await run([*STARTER, "status", "gen-anything", "--json"], env, tmp_path)
    assert code == 6
    assert out == ""
    assert err.count("\n") == 1, err
    assert f"cannot reach Temporal at 127.0.0.1:{port} (connection refused)" in err
    assert "make up" in err
    assert "Traceback" not in err


async def test_an_explicit_stack_with_development_secrets_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {**base_env(), "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    code, out, err = await run([*STARTER, "status", "gen-anything", "--json"], env, tmp_path)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert "CALLBACK_SECRET" in err and "ENVIRONMENT=dev" in err, err


def test_stack_ports_fill_in_only_what_is_not_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*PORT_ENV.values(), "TEMPORAL_ADDRESS", "TEMPORAL_UI_URL"]:
        monkeypatch.delenv(name, raising=False)
    temporal, ui = free_ports(2)
    state = StateDir(tmp_path)
    state.ports_file.write_text(json.dumps({"temporal": temporal, "temporal_ui": ui}))

    found = with_stack_ports(Settings(_env_file=None), state)
    assert (found.temporal_address, found.temporal_ui_url) == (
        f"127.0.0.1:{temporal}",
        f"http://127.0.0.1:{ui}",
    )
    explicit = with_stack_ports(Settings(_env_file=None, temporal_address="temporal.prod:7233"), state)
    assert (explicit.temporal_address, explicit.temporal_ui_url) == (
        "temporal.prod:7233",
        f"http://127.0.0.1:{ui}",
    )
    monkeypatch.setenv("DEV_TEMPORAL_PORT", "7999")
    assert with_stack_ports(Settings(_env_file=None), state).temporal_address == "127.0.0.1:7999"
    monkeypatch.setenv("DEV_TEMPORAL_PORT", "seven")
    with pytest.raises(ConfigError, match="DEV_TEMPORAL_PORT"):
        with_stack_ports(Settings(_env_file=None), state)


def run_python(code: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TEARDOWN_PROBE + code],
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("main", "code", "stderr"),
    [
        ("lambda: None", 0, ""),
        ("lambda: 3", 3, ""),
        ("lambda: sys.exit('bye')", 1, "bye\n"),
        ("lambda: sys.exit(2)", 2, ""),
        ("lambda: int('x')", 1, "ValueError: invalid literal for int() with base 10: 'x'\n"),
    ],
)
def test_run_main_leaves_with_the_status_python_would_give(main: str, code: int, stderr: str) -> None:
    # stdout is a pipe, so "printed" sits in a buffer until leave() flushes it.
    done = run_python(f"import sys\nfrom devstack.exits import run_main\nprint('printed')\nrun_main({main})")
    assert (done.returncode, done.stdout) == (code, "printed\n")
    assert done.stderr.endswith(stderr)
    if code == 1 and "ValueError" in stderr:
        assert done.stderr.startswith("Traceback (most recent call last):")
    # Interpreter teardown, where the SDK's threads crash the process, never ran.
    assert "teardown ran" not in done.stderr


def test_the_teardown_probe_shows_teardown_without_run_main() -> None:
    assert "teardown ran" in run_python("print('printed')").stderr


def test_lost_output_is_not_success() -> None:
    # Output that cannot be written at exit (a closed pipe, a full disk) is a failure, as in Python.
    done = run_python(
        "import io, sys\nfrom devstack.exits import run_main\n"
        "class Lost(io.StringIO):\n    def flush(self):\n        raise BrokenPipeError(32, 'Broken pipe')\n"
        "sys.stdout = Lost()\nrun_main(lambda: 0)"
    )
    assert done.returncode == 120


async def test_pytest_exits_with_its_status_after_its_summary(stack: Testbed) -> None:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        # Not a test module of the suite (its name is no test_*.py): only named here, it runs.
        "tests/pytest_probe.py",
        "-p",
        "no:cacheprovider",
    ]
    env = {**base_env(), "EXITS_PYTEST_PROBE_TEMPORAL": stack.settings.temporal_address}
    (passed, failed) = await asyncio.gather(
        run(argv, {**env, "EXITS_PYTEST_PROBE": "pass"}),
        run(argv, {**env, "EXITS_PYTEST_PROBE": "fail"}),
    )
    assert passed[0] == 0, passed
    assert " 1 passed" in passed[1].splitlines()[-1]
    assert failed[0] == 1, failed
    assert "FAILED" in failed[1] and " 1 failed" in failed[1].splitlines()[-1]
    for _, _, err in (passed, failed):
        assert "teardown ran" not in err
