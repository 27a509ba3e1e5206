"""`python -m simulator` as the dev stack runs it: HTTPS, a fault config file, its own key."""

from __future__ import annotations

import json
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
import trustme

from gptimage2 import GPTImage2Client, TaskStatus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(paths[0]))
    paths[1].write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(paths[2]))
    return paths


class Output:
    """The child's combined output, line by line, readable with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        threading.Thread(target=self._pump, args=(process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, marker: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not any(marker in line for line in self.seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{marker!r} not seen; output so far:\n{''.join(self.seen)}")
            try:
                self.seen.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue

    def drain(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "".join(self.seen)


@pytest.fixture
def started(tls: tuple[Path, Path, Path], tmp_path: Path) -> Iterator[tuple[str, Path, Output]]:
    ca, cert, key = tls
    config = tmp_path / "faults.json"
    config.write_text(json.dumps({"policy_keyword": "#forbidden", "callback_backoff_scale": 0.1}))
    port = free_port()
    argv = [sys.executable, "-m", "simulator", "--port", str(port), "--tls-cert", str(cert)]
    argv += ["--tls-key", str(key), "--time-scale", "1000", "--api-key", "cli-secret-key", "--seed", "7"]
    argv += ["--cache-dir", str(tmp_path / "videos"), "--config", str(config), "--callback-cafile", str(ca)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(process)
    try:
        output.wait_for("Uvicorn running on", within=30)
        yield f"https://127.0.0.1:{port}", ca, output
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the parent sees the signal.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
        output.wait_for("Application shutdown complete", within=5)


async def test_cli_serves_the_contract_with_its_config_file(started: tuple[str, Path, Output]) -> None:
    base_url, ca, output = started
    async with GPTImage2Client("cli-secret-key", base_url, verify=str(ca)) as client:
        task = await client.create_task({"prompt": "a #forbidden scene #gen=2"})
        async with httpx.AsyncClient(base_url=base_url, verify=ssl.create_default_context(cafile=ca)) as http:
            waited = await http.post("/_sim/wait", json={"task_id": task.id, "timeout": 10})
            assert waited.status_code == 200
            assert (await http.get("/_sim/config")).json()["policy_keyword"] == "#forbidden"
        failed = await client.get_task(task.id)
    assert failed.known_status is TaskStatus.FAILED
    assert failed.error is not None and failed.error.code == "content_policy_violation"
    log = output.drain()
    assert "seed 7" in log and task.id in log
    assert "cli-secret-key" not in log  # the key never reaches a log line


def test_cli_refuses_a_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "faults.json"
    config.write_text(json.dumps({"no_such_knob": 1}))
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "--port", str(free_port()), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "no_such_knob" in done.stderr
