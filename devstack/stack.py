"""The local stack behind `make up` / `make down` / `make status`.

Parts (devstack/parts.py describes each), all bound to 127.0.0.1, started in this order and each
awaited with a real readiness check (never a fixed sleep):

| part      | what                                     | ready when                               |
|-----------|------------------------------------------|------------------------------------------|
| temporal  | `temporal server start-dev`, SQLite WAL  | `temporal operator cluster health`       |
| seaweed   | `weed mini` S3 store, credentials needed | a PUT into `videos` works, and its rule  |
|           |                                          | aborting unfinished uploads is installed |
| simulator | `python -m simulator` (HTTPS)            | `GET /_sim/stats` answers 200            |
| api       | `python -m api` (HTTPS)                  | `GET /healthz` answers 200               |
| worker    | `python worker.py`                       | it polls the task queue (its pid@host)   |

State lives in the state directory: `.local/` at the repo root, or `$DEVSTACK_DIR`, or
`--state-dir`:

    env            generated secrets (S3 keys, callback secret, simulator key), mode 0600;
                   extra KEY=VALUE lines you add are passed to the Python parts too
    ports.json     the ports of the running stack (removed by `down`)
    run/NAME.pid   one pid file per part; `down` stops only a pid whose /proc entry still
                   shows that part (its cmdline and the DEVSTACK_PART/DEVSTACK_DIR it was given)
    logs/NAME.log  each part's output
    temporal.db    Temporal's SQLite file (workflows survive `down` / `up`)
    seaweed/       the S3 store's data and config
    tls/           the dev CA (`ca.pem`) and the server certificate the API and simulator use

Ports, each overridable by an environment variable:
`DEV_TEMPORAL_PORT` (7233), `DEV_TEMPORAL_UI_PORT` (8233), `DEV_S3_PORT` (8333),
`DEV_SIM_PORT` (9100), `DEV_API_PORT` (8000), `DEV_WORKER_METRICS_PORT` (9464, the worker's
Prometheus metrics). While the stack runs, `status`, `down` and
`demo` read the ports it was started with from `ports.json`, so the variables are only needed
for `up`. A port held by another program stops `up` before anything starts.

Exit codes: 0 success; 1 a part failed to start (its log's tail is printed); 2 bad
configuration or a port taken; 3 (`status` only) some part is not running or not ready.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from devstack.files import read_json
from devstack.parts import PARTS, Part
from devstack.ports import port_is_free
from devstack.processes import StartupError, pid_alive, spawn, wait_until
from devstack.state import ConfigError, Stack, StateDir, configured_ports, load_stack, state_dir
from devstack.tls import make_dev_ca

if TYPE_CHECKING:
    from settings import Settings

READY_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


def _server_env(state: StateDir, part: Part) -> dict[str, str]:
    # Native servers get a minimal environment: weed, for one, would otherwise accept a
    # developer's AWS_ACCESS_KEY_ID as an extra admin identity.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(_tags(state, part))
    return env


def _tags(state: StateDir, part: Part) -> dict[str, str]:
    return {"DEVSTACK_DIR": str(state.root), "DEVSTACK_PART": part.name}


def with_stack_ports(settings: Settings, state: StateDir | None = None) -> Settings:
    """`settings` pointed at the dev stack's Temporal (and Web UI) as `status` finds them, for
    each of the two that the environment or `.env` does not set explicitly.

    Raises ConfigError for a malformed DEV_* port."""
    state = state or state_dir()
    stack = Stack(state=state, ports=configured_ports(state))
    found = {"temporal_address": stack.temporal_address, "temporal_ui_url": stack.temporal_ui_url}
    return settings.model_copy(
        update={name: value for name, value in found.items() if name not in settings.model_fields_set}
    )


def client_settings(state: StateDir | None = None) -> Settings:
    """Settings for a client of the stack (`reliable-video`, the README's Python example): what
    the environment or `.env` configures; when that sets no TEMPORAL_ADDRESS, the running dev
    stack, on the ports `status` finds, which is a development environment (its demo keys and
    history key are accepted).

    Raises ConfigError for a malformed DEV_* port, pydantic's ValidationError for bad settings."""
    from settings import DEV_ENVIRONMENT, Settings, get_settings

    as_dev = Settings(environment=DEV_ENVIRONMENT)
    if "temporal_address" in as_dev.model_fields_set:
        return get_settings()
    return with_stack_ports(as_dev, state)


# ---------------------------------------------------------------------------------------------
# processes


def running_pid(state: StateDir, part: Part) -> int | None:
    """The part's pid if its pid file names a live process that still is that part."""
    try:
        pid = int(state.pid_file(part.name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if is_part_process(pid, state, part) else None


def is_part_process(pid: int, state: StateDir, part: Part) -> bool:
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return False
    marker = part.cmdline_marker.encode()
    if not any(marker in arg for arg in cmdline):
        return False
    return all(f"{key}={value}".encode() in environ for key, value in _tags(state, part).items())


def _write_pid(state: StateDir, part: Part, pid: int) -> None:
    state.pid_file(part.name).write_text(f"{pid}\n")


def _group_pids(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (a part and anything it forked)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # After the command name: state, ppid, pgrp.
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def _signal_part(pid: int, sig: signal.Signals) -> None:
    # Each part leads its own session (start_new_session), so signalling the group reaches
    # helpers it forked too, e.g. encoder processes, without touching anything else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_parts(state: StateDir, parts: Sequence[Part], out: TextIO) -> None:
    """SIGTERM the parts together, wait, SIGKILL whatever is left after STOP_TIMEOUT."""
    pids = {part.name: pid for part in parts if (pid := running_pid(state, part)) is not None}
    for part in parts:
        if part.name not in pids:
            state.pid_file(part.name).unlink(missing_ok=True)
    for pid in pids.values():
        _signal_part(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_group_pids(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name, pid in pids.items():
        if _group_pids(pid):
            print(f"{name:<10} did not stop in {STOP_TIMEOUT:.0f} s; killing", file=out)
            _signal_part(pid, signal.SIGKILL)
    while any(_group_pids(pid) for pid in pids.values()) and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    for name in pids:
        state.pid_file(name).unlink(missing_ok=True)
        print(f"{name:<10} stopped", file=out)


# ---------------------------------------------------------------------------------------------
# starting


def _start_part(stack: Stack, part: Part) -> subprocess.Popen[bytes]:
    """Starts one part detached from this process (it outlives `up`)."""
    state = stack.state
    log_path = state.log(part.name)
    if part.launch is not None:
        return part.launch(stack, log_path, _server_env(state, part))
    assert part.argv is not None
    env = stack.app_env()
    env.update(_tags(state, part))
    # cwd is the state dir, not the repo: a developer's repo `.env` (maybe pointing at
    # production) must not fill in what the dev stack leaves unset.
    return spawn(part.argv(stack), cwd=state.root, log_path=log_path, env=env, die_with_parent=False)


def _port_conflicts(stack: Stack, parts: Sequence[Part]) -> list[str]:
    problems = []
    for part in parts:
        for port in part.ports:
            number = stack.ports[port.name]
            if not port_is_free(number):
                problems.append(
                    f"port {number} ({part.name}, {port.env}) is already in use by another program"
                )
    return problems


@contextlib.contextmanager
def _locked(state: StateDir) -> Iterator[None]:
    # Two `up`s at once (say `make demo` in two terminals) must not both start a part.
    with open(state.root / "devstack.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(state: StateDir, out: TextIO = sys.stdout) -> int:
    state.create()
    with _locked(state):
        try:
            stack = load_stack(state, create=True)
        except ConfigError as error:
            print(f"error: {error}", file=out)
            return 2
        running = {part.name: pid for part in PARTS if (pid := running_pid(state, part)) is not None}
        if running and state.ports_file.is_file():
            recorded = read_json(state.ports_file)
            for part in PARTS:
                if part.name not in running:
                    continue
                for port in part.ports:
                    name = port.name
                    if name in recorded and int(recorded[name]) != stack.ports[name]:
                        print(
                            f"note: {part.name} is already running on port {recorded[name]}; "
                            f"run `down` first to move it to {stack.ports[name]}",
                            file=out,
                        )
                        stack.ports[name] = int(recorded[name])
        problems = _port_conflicts(stack, [part for part in PARTS if part.name not in running])
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=out)
            print("nothing was started; free the port or choose another (see `DEV_*_PORT`)", file=out)
            return 2
        state.ports_file.write_text(json.dumps(stack.ports, indent=2) + "\n")
        make_dev_ca(state.tls)

        # The parts of a wave do not depend on each other: start them together, then await them.
        for wave in sorted({part.wave for part in PARTS}):
            parts = [part for part in PARTS if part.wave == wave]
            started: dict[str, float] = {}
            processes: dict[str, subprocess.Popen[bytes]] = {}
            for part in parts:
                if part.name in running:
                    print(f"{part.name:<10} already running (pid {running[part.name]})", file=out)
                    continue
                processes[part.name] = _start_part(stack, part)
                running[part.name] = processes[part.name].pid
                _write_pid(state, part, running[part.name])
                started[part.name] = time.monotonic()
            for part in parts:
                pid = running[part.name]
                try:
                    wait_until(
                        functools.partial(part.ready, stack, pid),
                        timeout=READY_TIMEOUT,
                        what=part.name,
                        process=processes.get(part.name),
                        pid=pid,
                        log_path=state.log(part.name),
                        interval=0.2,
                    )
                except StartupError as error:
                    print(f"{part.name:<10} FAILED: {error}", file=out)
                    if part.name in started:
                        stop_parts(state, [part], out)
                    print("other parts were left running; `down` stops them", file=out)
                    return 1
                if part.name in started:
                    elapsed = time.monotonic() - started[part.name]
                    print(f"{part.name:<10} ready in {elapsed:.1f} s  {part.url(stack)}", file=out)
        print(f"logs in {state.logs}; Temporal Web UI: {stack.temporal_ui_url}", file=out)
        return 0


def down(state: StateDir, out: TextIO = sys.stdout) -> int:
    if not state.root.is_dir():
        print("nothing to stop", file=out)
        return 0
    with _locked(state):
        # Apps first, so the worker and API do not spend their shutdown retrying a vanished
        # Temporal; then the servers, each group in reverse start order.
        last_first = PARTS[::-1]
        stop_parts(state, [part for part in last_first if part.is_app], out)
        stop_parts(state, [part for part in last_first if not part.is_app], out)
        for part in PARTS:
            if part.after_stop is not None:
                part.after_stop(state)
        state.ports_file.unlink(missing_ok=True)
        print("stack is down", file=out)
    return 0


def status(state: StateDir, out: TextIO = sys.stdout) -> int:
    try:
        stack = load_stack(state)
    except ConfigError as error:
        print(f"error: {error}", file=out)
        return 2
    all_ready = True
    print(f"state: {state.root}", file=out)
    for part in PARTS:
        pid = running_pid(state, part)
        if pid is None:
            all_ready = False
            print(f"{part.name:<10} stopped             {part.url(stack)}", file=out)
            continue
        ready = part.ready(stack, pid)
        all_ready = all_ready and ready
        state_text = "ready" if ready else "NOT READY"
        print(f"{part.name:<10} {state_text:<9} pid {pid:<6} {part.url(stack)}", file=out)
    return 0 if all_ready else 3
