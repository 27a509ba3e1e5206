"""The launchers behave as the dev stack and other suites rely on: loopback only, credentials
required, readiness that means "usable", and a clean stop."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import urllib3
from minio import Minio
from minio.error import S3Error
from temporalio.common import SearchAttributeKey

from devstack.demo import REQUEST as DEMO_REQUEST
from devstack.parts import DEFAULT_PORTS, PORT_ENV
from devstack.ports import free_port, free_ports, listening_sockets, port_is_free, wait_for_port
from devstack.processes import StartupError, find_binary, pid_alive
from devstack.seaweed import ABORT_INCOMPLETE_UPLOADS_RULE, SeaweedServer
from devstack.temporal_server import (
    TemporalDevServer,
    ensure_search_attributes,
    registered_search_attributes,
    search_attribute_types,
)
from devstack.tls import make_dev_ca
from temporal_client import CODEC_PATH
from workflows.search_attributes import SEARCH_ATTRIBUTES


def test_free_ports_are_distinct_and_free() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(port_is_free(port) for port in ports)


def test_free_ports_skip_the_ports_promised_to_others() -> None:
    promised = set(free_ports(200))  # released: the kernel may offer any of them again
    again = free_ports(200, avoid=promised)
    assert len(set(again)) == 200 and not promised & set(again)


def test_wait_for_port_times_out_on_a_closed_port() -> None:
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", free_port(), timeout=0.3)


def test_dev_ca_is_reused_and_serves_https(tmp_path: Path) -> None:
    first = make_dev_ca(tmp_path)
    ca_before = first.ca.read_bytes()
    assert make_dev_ca(tmp_path).ca.read_bytes() == ca_before
    assert first.key.stat().st_mode & 0o077 == 0

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(first.cert, first.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        for host in ("localhost", "127.0.0.1"):
            response = httpx.get(f"https://{host}:{port}/", verify=first.ssl_context())
            assert response.text == "hello"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{port}/", verify=ssl.create_default_context())
    finally:
        server.shutdown()
        server.server_close()


# `s3` is the session's SeaweedServer (tests/conftest.py), started by the same launcher.
def test_seaweed_stores_and_returns_an_object_with_credentials(s3: SeaweedServer) -> None:
    client = s3.minio_client()
    client.put_object(s3.bucket, "hello.txt", io.BytesIO(b"hello"), length=5)
    response = client.get_object(s3.bucket, "hello.txt")
    try:
        assert response.read() == b"hello"
    finally:
        response.close()
        response.release_conn()


def test_seaweed_refuses_anonymous_and_wrong_secret(s3: SeaweedServer) -> None:
    s3.minio_client().put_object(s3.bucket, "private.txt", io.BytesIO(b"secret"), length=6)
    base = f"http://{s3.endpoint}/{s3.bucket}"
    assert httpx.get(f"{base}/private.txt").status_code == 403
    assert httpx.put(f"{base}/anonymous.txt", content=b"x").status_code == 403

    wrong = Minio(
        s3.endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key + "x",
        secure=False,
        region="us-east-1",
        http_client=urllib3.PoolManager(retries=False),
    )
    with pytest.raises(S3Error) as refused:
        wrong.put_object(s3.bucket, "forged.txt", io.BytesIO(b"x"), length=1)
    assert refused.value.code == "SignatureDoesNotMatch"


def test_seaweed_filer_needs_a_token(s3: SeaweedServer) -> None:
    filer = f"http://127.0.0.1:{s3.ports['filer.port']}"
    assert httpx.get(f"{filer}/buckets/").status_code == 401
    assert httpx.post(f"{filer}/buckets/{s3.bucket}/x.txt", files={"f": b"x"}).status_code == 401


def test_seaweed_listens_on_loopback_only_on_the_ports_chosen(s3: SeaweedServer) -> None:
    listening = listening_sockets(s3.process.pid)
    assert listening, "no listening sockets found"
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    assert {port for _, port in listening} <= set(s3.ports.values())


def test_seaweed_bucket_aborts_unfinished_uploads_after_a_day(s3: SeaweedServer) -> None:
    config = s3.minio_client().get_bucket_lifecycle(s3.bucket)
    assert config is not None
    [rule] = [r for r in config.rules if r.rule_id == ABORT_INCOMPLETE_UPLOADS_RULE]
    assert rule.status == "Enabled" and rule.abort_incomplete_multipart_upload is not None
    assert rule.abort_incomplete_multipart_upload.days_after_initiation == 1


def test_seaweed_stop_frees_its_ports(tmp_path: Path) -> None:
    server = SeaweedServer.start(tmp_path)
    server.wait_ready(timeout=60)
    server.stop()
    assert not pid_alive(server.process.pid)
    assert all(port_is_free(port) for port in server.ports.values())


def test_temporal_dev_server_registers_the_project_search_attributes(tmp_path: Path) -> None:
    server = TemporalDevServer.start(tmp_path, headless=True, persistent=False)
    try:
        server.wait_ready(timeout=60)
        expected = search_attribute_types()
        assert expected
        assert registered_search_attributes(server.address) == expected
        assert {ip for ip, _ in listening_sockets(server.process.pid)} == {"127.0.0.1"}
    finally:
        server.stop()
    assert not pid_alive(server.process.pid)
    assert port_is_free(server.port)


def test_a_persisted_temporal_database_gains_attributes_added_since(tmp_path: Path) -> None:
    """`start-dev` registers `--search-attribute`s only when it creates its database: a dev
    stack upgraded to code with a new attribute must still get it (or every upsert wedges)."""
    first, *added = SEARCH_ATTRIBUTES
    server = TemporalDevServer.start(tmp_path, headless=True, search_attributes=[first])
    try:
        server.wait_ready(timeout=60)
    finally:
        server.stop()
    server = TemporalDevServer.start(tmp_path, headless=True)  # the same database, today's list
    try:
        server.wait_ready(timeout=60)
        assert registered_search_attributes(server.address) == search_attribute_types()
        clash = SearchAttributeKey.for_int(first.name)  # a registered type cannot change
        with pytest.raises(StartupError, match=first.name):
            ensure_search_attributes(server.address, [clash])
    finally:
        server.stop()
    assert added


# ---------------------------------------------------------------------------------------------
# `python -m devstack`, driven as a user would


REPO_ROOT = Path(__file__).resolve().parents[2]


def devstack_env(state: Path, ports: dict[str, int]) -> dict[str, str]:
    env = dict(os.environ)
    env["DEVSTACK_DIR"] = str(state)
    env.update({PORT_ENV[name]: str(port) for name, port in ports.items()})
    return env


def run_devstack(command: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def recorded_pids(state: Path) -> list[int]:
    return [int(path.read_text()) for path in (state / "run").glob("*.pid")]


def test_up_refuses_a_taken_port_and_starts_nothing(tmp_path: Path) -> None:
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["api"]))
        squatter.listen()
        result = run_devstack("up", devstack_env(tmp_path, ports))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {ports['api']}" in result.stdout
    assert "DEV_API_PORT" in result.stdout
    assert recorded_pids(tmp_path) == []
    assert all(port_is_free(port) for port in ports.values())


def test_down_never_stops_a_process_that_reused_a_recorded_pid(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir(parents=True)
    # Our own pid stands in for an unrelated process that got a recorded pid after a reboot.
    (tmp_path / "run" / "api.pid").write_text(f"{os.getpid()}\n")
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    env = devstack_env(tmp_path, ports)
    status = run_devstack("status", env)
    assert status.returncode == 3
    assert "api        stopped" in status.stdout
    assert run_devstack("down", env).returncode == 0
    assert pid_alive(os.getpid())


def test_a_part_that_fails_to_start_is_reported_with_its_log(tmp_path: Path) -> None:
    # A malformed tenant list in the state's env file makes the API refuse to start.
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "env").write_text("API_KEYS=malformed\n")
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    env = devstack_env(tmp_path, ports)
    try:
        result = run_devstack("up", env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "api        FAILED" in result.stdout
        assert "API_KEYS must be tenant:key pairs" in result.stdout, "the log's tail is shown"
        assert not (tmp_path / "run" / "api.pid").exists()
    finally:
        stopped = run_devstack("down", env)
    assert stopped.returncode == 0
    assert recorded_pids(tmp_path) == []
    assert all(port_is_free(port) for port in ports.values())


def test_stack_up_status_demo_down(tmp_path: Path) -> None:
    """The whole local stack on free ports: `make demo` from nothing, as the README says it
    (it starts the stack and makes a video), up again, status, the demo again, down."""
    state = tmp_path / "state"
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    env = devstack_env(state, ports)
    seaweed_ports: dict[str, int] = {}
    pids: list[int] = []
    try:
        first = subprocess.run(
            ["make", "demo"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert first.returncode == 0, first.stdout + first.stderr
        assert "verified:" in first.stdout
        pids = recorded_pids(state)
        assert len(pids) == 5
        seaweed_ports = json.loads((state / "seaweed" / "ports.json").read_text())
        for pid in pids:
            assert {ip for ip, _ in listening_sockets(pid)} <= {"127.0.0.1"}
        assert (state / "env").stat().st_mode & 0o077 == 0
        generation_id = _generation_id(first.stdout)
        ui = f"http://127.0.0.1:{ports['temporal_ui']}/namespaces/default/workflows/"
        assert ui in first.stdout

        again = run_devstack("up", env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count("already running") == 5
        assert sorted(recorded_pids(state)) == sorted(pids)

        shown = run_devstack("status", env)
        assert shown.returncode == 0, shown.stdout
        assert shown.stdout.count(" ready ") == 5
        assert f"https://127.0.0.1:{ports['api']}" in shown.stdout

        # The worker's metrics are on, on their own port: the demo's generation is counted.
        metrics_url = f"http://127.0.0.1:{ports['worker_metrics']}/metrics"
        assert metrics_url in shown.stdout
        scraped = httpx.get(metrics_url, timeout=10).text
        assert re.search(r'^video_generations_total\{[^}]*status="delivered"[^}]*\} 1$', scraped, re.M), (
            scraped
        )

        # Same checkout, same idempotency key: the same generation, not a new one.
        second = run_devstack("demo", env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "found existing generation" in second.stdout
        assert _generation_id(second.stdout) == generation_id

        secrets = dict(line.split("=", 1) for line in (state / "env").read_text().splitlines() if "=" in line)
        printed = "".join(r.stdout + r.stderr for r in (first, again, shown, second))
        for name in ("S3_SECRET_KEY", "CALLBACK_SECRET", "GPTIMAGE2_API_KEY", "OPS_API_KEY"):
            assert secrets[name] not in printed, f"{name} was printed"

        # The dev stack encrypts history as production does; the Web UI is pointed at the API's
        # codec endpoint, which opens it for the ops key (here through the real temporal CLI).
        codec_endpoint = f"https://127.0.0.1:{ports['api']}{CODEC_PATH}"
        temporal_pid = int((state / "run" / "temporal.pid").read_text())
        cmdline = Path(f"/proc/{temporal_pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"--ui-codec-endpoint") + 1] == codec_endpoint.encode()
        show = [find_binary("temporal"), "workflow", "show", "-w", generation_id, "-o", "json"]
        show += ["--address", f"127.0.0.1:{ports['temporal']}"]
        tls_env = {**os.environ, "SSL_CERT_FILE": str(state / "tls" / "ca.pem")}
        said = "Do not move"
        assert said in str(DEMO_REQUEST["prompt"])
        raw = subprocess.run(show, capture_output=True, text=True, env=tls_env, timeout=60, check=False)
        assert raw.returncode == 0, raw.stderr
        assert said not in _decoded_strings(raw.stdout)
        show += ["--codec-endpoint", codec_endpoint, "--codec-auth", f"Bearer {secrets['OPS_API_KEY']}"]
        decoded = subprocess.run(show, capture_output=True, text=True, env=tls_env, timeout=60, check=False)
        assert decoded.returncode == 0, decoded.stderr
        assert said in _decoded_strings(decoded.stdout)
    finally:
        stopped = run_devstack("down", env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(pid_alive(pid) for pid in pids)
    assert all(port_is_free(port) for port in ports.values())
    assert all(port_is_free(port) for port in seaweed_ports.values())
    assert recorded_pids(state) == []
    after = run_devstack("status", env)
    assert after.returncode == 3
    assert after.stdout.count("stopped") == 5


def _decoded_strings(shown: str) -> str:
    """`temporal workflow show -o json` output with every base64 payload field decoded too."""
    texts = [shown]
    for value in re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', shown):
        texts.append(base64.b64decode(value).decode("utf-8", "replace"))
    return "\n".join(texts)


def _generation_id(demo_output: str) -> str:
    for line in demo_output.splitlines():
        if " generation " in line and "(Idempotency-Key" in line:
            return line.split(" generation ", 1)[1].split()[0]
    raise AssertionError(f"no generation id in:\n{demo_output}")
