"""Starting, waiting for and stopping the child processes every launcher here uses.

Children are started directly with `Popen` (never through a shell) so the pid we hold is the
server's own, and their output goes to a log file the caller can show when startup fails.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A server did not become ready; the message carries the tail of its log."""


def find_binary(name: str) -> str:
    """The venv's own copy of a tool first (the pinned version), then whatever PATH has.

    `make` runs `.venv/bin/python` without activating the venv, so PATH alone would miss it.
    """
    import shutil

    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"`{name}` not found beside {sys.executable} or on PATH")
    return found


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the child when the thread that started it
    # exits, so a crashed test run leaves no servers behind on a shared machine.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Starts argv in its own session with stdout+stderr appended to log_path.

    `die_with_parent` suits test fixtures (call it from the main thread: the signal fires
    when the *starting thread* exits); the dev stack turns it off so servers outlive `up`.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: Ctrl-C in the terminal that ran `make up` must not reach the stack.
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None,
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file (empty if it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    pid: int | None = None,
    log_path: Path | None = None,
    interval: float = 0.1,
) -> None:
    """Polls `check` until it returns True; fails fast if the process dies meanwhile.

    Raises StartupError (with the log's tail) on death or when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if process is not None and process.poll() is not None:
            message = f"{what} exited (code {process.returncode}) before it was ready"
            raise StartupError(_failure(message, log_path))
        if process is None and pid is not None and not pid_alive(pid):
            raise StartupError(_failure(f"{what} (pid {pid}) exited", log_path))
        if time.monotonic() >= deadline:
            raise StartupError(_failure(f"{what} not ready after {timeout:.0f} s", log_path))
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _failure(message: str, log_path: Path | None) -> str:
    if log_path is None:
        return message
    last = tail(log_path)
    return f"{message}; last lines of {log_path}:\n{last}" if last else f"{message} (log {log_path} is empty)"
