"""The README runs as written: every `sh` and `python` block in it is executed against the real
stack, and every `dotenv` block names only settings that exist.

The only thing changed before a block runs is where the stack is: the README shows the dev
stack's addresses (`https://127.0.0.1:8000`, `127.0.0.1:7233`) and state directory (`.local/`,
holding the dev CA and the stack's secrets), the test session's stack is on free ports with a
state directory made here, so those strings are replaced and the block gets the stack's settings
as environment variables (as `.env` would give them). A block that must not run here (`make
test` would run this suite inside itself) says so on the line before it: `<!-- not run: why -->`.

Beside the examples: every file path the README names exists, every variable its tables
document is one the code reads (and every setting is documented), and its production `dotenv`
example names every secret that has a development default.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from api.config import ApiConfig
from devstack.parts import PORT_ENV
from devstack.ports import free_ports
from devstack.stack import client_settings
from devstack.state import StateDir
from devstack.testbed import Testbed
from settings import DEV_ENVIRONMENT, Settings, get_settings
from temporal_client import connect
from worker import product_worker

README = Path(__file__).resolve().parent.parent / "README.md"
REPO_ROOT = README.parent
DEV_API_URL = "https://127.0.0.1:8000"
DEV_TEMPORAL = "127.0.0.1:7233"
DEV_STATE = ".local/"
# What no example may run here: the suite itself (it would recurse).
UNRUNNABLE = re.compile(r"\bmake\s+test\b|\bpytest\b")
# Examples that start the dev stack run it on a stack of their own: free ports, its own state.
STARTS_A_STACK = re.compile(r"\bmake\s+(?:demo|up)\b|\bpython3? -m devstack\b")
PORT_ASSIGNMENT = re.compile(r"\b(DEV_\w+_PORT)=\d+")
# The blocks that must not run here, each with where it is proven instead.
NOT_RUN_HERE = {
    "make test": "CI's .ci/run runs exactly `make test`",
    "make demo": "tests/devstack/test_devstack.py::test_stack_up_status_demo_down runs it as written, on free ports",
    "docker compose up": "no Docker engine here; tests/test_compose.py checks the compose file",
}
EXAMPLE_TIMEOUT = 120
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # 1-based line of the opening fence
    not_run: str | None  # the reason given, when the block is marked not to run

    @property
    def id(self) -> str:
        return f"{self.language}-line{self.line}"


def readme_blocks(text: str) -> list[Block]:
    """Fenced blocks with their language and any `<!-- not run: ... -->` mark just above."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        start = index
        end = start + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"README.md:{start + 1}: code block is never closed")
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        mark = NOT_RUN.search(previous)
        blocks.append(
            Block(
                language=opening.group(1),
                code="\n".join(lines[start + 1 : end]) + "\n",
                line=start + 1,
                not_run=mark.group(1) if mark else None,
            )
        )
        index = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())
RUNNABLE = [b for b in BLOCKS if b.language in ("sh", "python") and b.not_run is None]


def test_readme_has_runnable_examples() -> None:
    assert {b.language for b in RUNNABLE} == {"sh", "python"}, "the README lost its runnable examples"


def test_the_blocks_not_run_here_are_proven_elsewhere() -> None:
    """A block marked not run is one of the known few, each checked where it can be."""
    not_run = [b for b in BLOCKS if b.not_run is not None]
    for block in not_run:
        assert any(command in block.code for command in NOT_RUN_HERE), (
            f"README.md:{block.line} is marked not run but is none of {sorted(NOT_RUN_HERE)}: run it"
        )
    assert {command for command in NOT_RUN_HERE if any(command in b.code for b in not_run)} == set(
        NOT_RUN_HERE
    )
    assert (REPO_ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_block_parser_reads_marks_and_languages() -> None:
    text = "intro\n```sh\necho one\n```\n<!-- not run: reason here -->\n\n```python\nprint(2)\n```\n"
    blocks = readme_blocks(text)
    assert [(b.language, b.code, b.line, b.not_run) for b in blocks] == [
        ("sh", "echo one\n", 2, None),
        ("python", "print(2)\n", 7, "reason here"),
    ]
    with pytest.raises(ValueError, match="never closed"):
        readme_blocks("```sh\necho")


DOTENV = [b for b in BLOCKS if b.language == "dotenv"]
SETTINGS = {name.upper() for name in Settings.model_fields}


def dotenv_names(code: str) -> list[str]:
    return re.findall(r"(?m)(?:^|\s)([A-Z][A-Z0-9_]+)=", code)


@pytest.mark.parametrize("block", DOTENV, ids=lambda b: b.id)
def test_dotenv_blocks_name_real_settings(block: Block) -> None:
    named = dotenv_names(block.code)
    assert named, "a dotenv block sets at least one variable"
    unknown = sorted(set(named) - SETTINGS)
    assert not unknown, f"README.md:{block.line}: no such setting: {', '.join(unknown)}"


def test_the_production_example_sets_every_secret_with_a_development_default() -> None:
    # Copying the README's settings must not leave a secret on its published default, which a
    # production process refuses at startup.
    with_dev_default = {
        name.upper() for name, field in Settings.model_fields.items() if isinstance(field.default, SecretStr)
    }
    assert with_dev_default, "Settings has development secrets"
    named = {name for block in DOTENV for name in dotenv_names(block.code)}
    assert not with_dev_default - named, f"the README's dotenv omits {sorted(with_dev_default - named)}"


# ---- the variables and files the README names -------------------------------------------------

ENV_NAME = re.compile(r"`([A-Z][A-Z0-9_]*[A-Z0-9])`")


def table_variables(text: str) -> set[str]:
    """Variables named in backticks in the first cell of a table row."""
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith("|"):
            found.update(ENV_NAME.findall(line.split("|")[1]))
    return found


def test_every_documented_variable_is_read_and_every_setting_is_documented() -> None:
    read = SETTINGS | {"API_" + name.upper() for name in ApiConfig.model_fields}
    read |= set(PORT_ENV.values()) | {"DEVSTACK_DIR"}
    documented = table_variables(README.read_text())
    assert not documented - read, f"documented but read by nothing: {sorted(documented - read)}"
    undocumented = (SETTINGS | set(PORT_ENV.values())) - documented
    assert not undocumented, f"not in the README's tables: {sorted(undocumented)}"


def test_table_variables_are_read_from_first_cells_only() -> None:
    text = "| `A_B`, `CD` | uses `NOT_THIS` |\nprose `NOR_THIS`\n"
    assert table_variables(text) == {"A_B", "CD"}


PATH = re.compile(r"(?<![\w./:-])(\.?[A-Za-z_][\w.-]*(?:/[\w.-]+)+/?)")
COPY = re.compile(r"^\s*cp\s+\S+\s+(\S+)", re.MULTILINE)


def missing_paths(text: str, root: Path) -> list[str]:
    """Paths in the repo (or in its .venv) that `text` names and that do not exist. Only paths
    under one of the checkout's top-level entries count (`text/plain` is no path); `.local/` is
    what `make up` creates, and a `cp` destination is what the reader makes."""
    created = set(COPY.findall(text))
    tops = {entry.name for entry in root.iterdir()} - {".local"}
    missing = []
    for path in dict.fromkeys(PATH.findall(text)):
        if path.split("/")[0] in tops and path not in created and not (root / path).exists():
            missing.append(path)
    return missing


def test_every_path_the_readme_names_exists() -> None:
    assert not missing_paths(README.read_text(), REPO_ROOT)


def test_path_check_finds_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "prod.env.example").write_text("")
    text = (
        "`docker compose --env-file deploy/prod.env`, then deploy/prod.env.example, "
        "text/plain, https://host/deploy/x, `.local/tls/ca.pem`\n"
        "```sh\ncp deploy/prod.env.example deploy/made.env\n```\n"
    )
    assert missing_paths(text, tmp_path) == ["deploy/prod.env"]


# ---- the Python example's route to the dev stack ------------------------------------------------


def test_client_settings_finds_the_running_dev_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh clone after `make up` (here on moved ports): no settings in the environment, the
    # stack's ports in its state directory.
    for name in [*SETTINGS, *PORT_ENV.values()]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    state = StateDir(tmp_path / "state")
    state.create()
    state.ports_file.write_text(json.dumps({"temporal": 17999, "temporal_ui": 18999}))
    found = client_settings(state)
    assert (found.environment, found.temporal_address, found.temporal_ui_url) == (
        DEV_ENVIRONMENT,
        "127.0.0.1:17999",
        "http://127.0.0.1:18999",
    )
    # An explicit address is the environment's settings, production included.
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("ENVIRONMENT", DEV_ENVIRONMENT)
    get_settings.cache_clear()
    try:
        explicit = client_settings(state)
    finally:
        get_settings.cache_clear()
    assert explicit.temporal_address == "temporal.internal:7233"


# ---- the examples -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state_dir(stack: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test stack's counterpart of `.local/`: its CA and the secrets the examples read."""
    root = tmp_path_factory.mktemp("devstack-state")
    (root / "tls").mkdir()
    shutil.copy(stack.tls.ca, root / "tls" / "ca.pem")
    ops_key = stack.settings.ops_api_key
    assert ops_key is not None
    (root / "env").write_text(f"OPS_API_KEY={ops_key.get_secret_value()}\n")
    return root


def _environment(stack: Testbed) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "S3_", "GPTIMAGE2_"))}
    env.update(stack.worker_env())
    return env


def _as_run_here(code: str, api_url: str, temporal_address: str, state: Path) -> str:
    return (
        code.replace(DEV_API_URL, api_url)
        .replace(DEV_TEMPORAL, temporal_address)
        .replace(DEV_STATE, f"{state}/")
    )


def test_only_the_stack_addresses_are_replaced(tmp_path: Path) -> None:
    code = "curl --cacert .local/tls/ca.pem https://127.0.0.1:8000/v1 --address 127.0.0.1:7233 .venv/bin/x"
    assert _as_run_here(code, "https://127.0.0.1:4443", "127.0.0.1:5555", tmp_path) == (
        f"curl --cacert {tmp_path}/tls/ca.pem https://127.0.0.1:4443/v1 --address 127.0.0.1:5555 .venv/bin/x"
    )


def test_the_suite_is_never_run_from_an_example_and_a_stack_runs_on_its_own() -> None:
    for code in ("make demo\nmake test", ".venv/bin/pytest -x"):
        assert UNRUNNABLE.search(code), code
    for code in (".venv/bin/reliable-video status x", "curl https://h/v1/make", "make install", "make up"):
        assert not UNRUNNABLE.search(code), code
    for code in ("make demo", "DEV_API_PORT=1 make up", "python -m devstack up"):
        assert STARTS_A_STACK.search(code), code
    assert PORT_ASSIGNMENT.sub(r"\1=9", "DEV_API_PORT=8443 DEV_TEMPORAL_PORT=7333 make up") == (
        "DEV_API_PORT=9 DEV_TEMPORAL_PORT=9 make up"
    )


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
async def test_readme_example_runs(stack: Testbed, state_dir: Path, block: Block, tmp_path: Path) -> None:
    unrunnable = UNRUNNABLE.search(block.code)
    assert unrunnable is None, (
        f"README.md:{block.line} runs `{unrunnable.group(0)}` (the suite inside itself): "
        "mark it <!-- not run: why --> and say in NOT_RUN_HERE where it is proven"
    )
    if STARTS_A_STACK.search(block.code):
        await _run_on_a_stack_of_its_own(block, tmp_path)
        return
    code = _as_run_here(block.code, stack.api_url, stack.settings.temporal_address, state_dir)
    await _run_block(block, code, _environment(stack), tmp_path)


async def _run_on_a_stack_of_its_own(block: Block, tmp_path: Path) -> None:
    """A block that starts the dev stack runs as written, but on free ports (its own DEV_*_PORT
    assignments included) with its own state directory; the stack is stopped afterwards."""
    names = sorted(PORT_ENV.values())
    env = {k: v for k, v in os.environ.items() if k not in names and k != "DEVSTACK_DIR"}
    env.update(zip(names, map(str, free_ports(len(names))), strict=True))
    env["DEVSTACK_DIR"] = str(tmp_path / "stack")
    code = PORT_ASSIGNMENT.sub(lambda m: f"{m[1]}={env[m[1]]}", block.code)
    try:
        await _run_block(block, code, env, tmp_path)
    finally:
        await _run_block(Block("sh", "make down", block.line, None), "make down", env, tmp_path)


@pytest.fixture(scope="module")
async def fresh_clone_state(stack: Testbed, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """The session's servers as `make up` leaves them for a fresh clone: a state directory whose
    `ports.json` names the session's Temporal, and a worker on what the dev stack runs with,
    settings.py's defaults (task queue, history key)."""
    dev = Settings(_env_file=None, environment=DEV_ENVIRONMENT)
    keys = [dev.history_encryption_keys, stack.settings.history_encryption_keys]
    settings = stack.settings.model_copy(
        update={
            "task_queue": dev.task_queue,
            # The dev key encrypts; the session's opens the signals of the session's API, which
            # receives the simulator's callbacks.
            "history_encryption_keys": SecretStr(",".join(key.get_secret_value() for key in keys)),
        }
    )
    state = StateDir(tmp_path_factory.mktemp("fresh-clone"))
    state.create()
    temporal_port = int(settings.temporal_address.rpartition(":")[2])
    state.ports_file.write_text(json.dumps({"temporal": temporal_port}))
    client = await connect(settings)
    async with AsyncExitStack() as running:
        provider = await running.enter_async_context(stack.provider())
        executor = running.enter_context(ThreadPoolExecutor(max_workers=4))
        await running.enter_async_context(product_worker(client, settings, provider, executor=executor))
        yield state.root


async def test_the_python_example_finds_the_dev_stack_with_no_settings(
    fresh_clone_state: Path, tmp_path: Path
) -> None:
    """As the README says: after `make up`, the Python example runs as written, with nothing in
    the environment (no ENVIRONMENT, no TEMPORAL_ADDRESS, no DEV_*_PORT) and no `.env`."""
    (block,) = [b for b in RUNNABLE if b.language == "python" and b.not_run is None]
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and k not in PORT_ENV.values()}
    env["DEVSTACK_DIR"] = str(fresh_clone_state)
    assert not (REPO_ROOT / ".env").exists(), "a .env in the checkout would configure the example"
    # Its own key: the session already ran the example as written, under the session's history key.
    key = re.search(r'idempotency_key="([^"]+)"', block.code)
    assert key is not None
    code = block.code.replace(key.group(0), 'idempotency_key="readme-python-fresh-clone"')
    stdout = await _run_block(block, code, env, tmp_path)
    assert "delivered" in stdout


async def _run_block(block: Block, code: str, env: dict[str, str], tmp_path: Path) -> str:
    """Runs `code` (the block, as run here) from the checkout; asserts exit 0, returns stdout."""
    if block.language == "sh":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        script = tmp_path / "example.py"
        script.write_text(code)
        command = [sys.executable, str(script)]
    # The API and the worker serve from this event loop: the example runs beside it, not in it.
    # In a session of its own, so a timeout stops whatever the example started too.
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), EXAMPLE_TIMEOUT)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    assert process.returncode == 0, (
        f"README.md:{block.line} ({block.language}) exited {process.returncode}\n"
        f"stdout:\n{stdout.decode()}\nstderr:\n{stderr.decode()}"
    )
    return stdout.decode()
