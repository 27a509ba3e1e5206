"""The Temporal dev server (`temporal server start-dev`) with the project's search attributes.

State goes to an SQLite file in WAL mode (measured: about twice the throughput of the default
journal) so workflows survive a restart; `persistent=False` keeps it in memory for tests.

Example (a pytest session fixture)::

    @pytest.fixture(scope="session")
    def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
        server = TemporalDevServer.start(tmp_path_factory.mktemp("temporal"), headless=True)
        try:
            server.wait_ready(timeout=60)
            yield server  # server.address == "127.0.0.1:PORT"
        finally:
            server.stop()
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from temporalio.common import SearchAttributeKey

from devstack.ports import LOOPBACK, free_ports
from devstack.processes import StartupError, find_binary, spawn, stop_process, wait_until

LOG_NAME = "temporal.log"
DB_NAME = "temporal.db"


def search_attribute_types(keys: Sequence[SearchAttributeKey] | None = None) -> dict[str, str]:
    """Name -> CLI type for `keys`, by default the project's list in workflows.search_attributes."""
    from workflows.search_attributes import SEARCH_ATTRIBUTES, cli_type

    return {key.name: cli_type(key) for key in (SEARCH_ATTRIBUTES if keys is None else keys)}


def health_ok(address: str) -> bool:
    """`temporal operator cluster health` says SERVING."""
    try:
        result = subprocess.run(
            [
                find_binary("temporal"),
                "operator",
                "cluster",
                "health",
                "--address",
                address,
                "--command-timeout",
                "3s",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and "SERVING" in result.stdout


def registered_search_attributes(address: str, namespace: str = "default") -> dict[str, str]:
    """Custom search attributes the server at `address` knows: name -> CLI type name."""
    argv = [find_binary("temporal"), "operator", "search-attribute", "list", "--address", address]
    argv += ["--namespace", namespace, "-o", "json", "--command-timeout", "10s"]
    listed = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    custom: dict[str, str] = json.loads(listed.stdout).get("customAttributes", {})
    from workflows.search_attributes import CLI_TYPE_NAMES

    return {name: CLI_TYPE_NAMES[kind.removeprefix("INDEXED_VALUE_TYPE_")] for name, kind in custom.items()}


def ensure_search_attributes(
    address: str, keys: Sequence[SearchAttributeKey] | None = None, namespace: str = "default"
) -> bool:
    """Registers those of `keys` (default: the project's list) the server lacks; True once all
    are there. `start-dev --search-attribute` registers only when it creates its database, so a
    persisted one (the dev stack after an upgrade) would lack an attribute added since, and every
    workflow upserting it would fail its task forever. A name registered with another type is
    refused (StartupError naming it): a type cannot change in place."""
    expected = search_attribute_types(keys)
    try:
        registered = registered_search_attributes(address, namespace)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False  # the namespace is not served yet
    for name, kind in expected.items():
        if name in registered and registered[name] != kind:
            raise StartupError(
                f"search attribute {name} is registered as {registered[name]}, the code needs {kind}; "
                "a registered type cannot change: reset the dev stack's Temporal database"
            )
        if name not in registered:
            argv = [find_binary("temporal"), "operator", "search-attribute", "create", "--address", address]
            argv += ["--namespace", namespace, "--name", name, "--type", kind, "--command-timeout", "10s"]
            subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return True


@dataclass
class TemporalDevServer:
    address: str
    ui_url: str | None
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    db_path: Path | None
    search_attributes: Sequence[SearchAttributeKey] | None = None  # None: the project's list

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        port: int | None = None,
        ui_port: int | None = None,
        headless: bool = False,
        persistent: bool = True,
        db_path: Path | None = None,
        search_attributes: Sequence[SearchAttributeKey] | None = None,
        namespaces: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
        avoid_ports: Iterable[int] = (),
    ) -> TemporalDevServer:
        """Starts the dev server on 127.0.0.1; ports not given are free ports (none of
        `avoid_ports`: ports promised to servers that may not listen yet).

        The HTTP API and metrics ports are pinned to free ports too, so nothing listens on an
        address the caller did not choose. Returns at once: call `wait_ready` before use.
        """
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        spare = iter(free_ports(4, avoid=set(avoid_ports)))
        port = port or next(spare)
        ui_port = ui_port or next(spare)
        argv = [
            find_binary("temporal"),
            "server",
            "start-dev",
            "--ip",
            LOOPBACK,
            "--port",
            str(port),
            "--http-port",
            str(next(spare)),
            "--metrics-port",
            str(next(spare)),
            "--log-level",
            "warn",
        ]
        if headless:
            argv.append("--headless")
        else:
            # No newsfeed fetch: the UI must not reach out to the internet from a dev box.
            argv += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
        if persistent:
            db_path = (db_path or workdir / DB_NAME).resolve()
            argv += [
                "--db-filename",
                str(db_path),
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=normal",
            ]
        else:
            db_path = None
        for name, kind in search_attribute_types(search_attributes).items():
            argv += ["--search-attribute", f"{name}={kind}"]
        for namespace in namespaces:
            argv += ["--namespace", namespace]
        argv += list(extra_args)

        log_path = log_path or workdir / LOG_NAME
        process = spawn(argv, cwd=workdir, log_path=log_path, env=env, die_with_parent=die_with_parent)
        return cls(
            address=f"{LOOPBACK}:{port}",
            ui_url=None if headless else f"http://{LOOPBACK}:{ui_port}",
            process=process,
            workdir=workdir,
            log_path=log_path,
            db_path=db_path,
            search_attributes=search_attributes,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Blocks until the frontend reports SERVING and the search attributes are registered."""
        wait_until(
            lambda: (
                health_ok(self.address) and ensure_search_attributes(self.address, self.search_attributes)
            ),
            timeout=timeout,
            what="Temporal dev server",
            process=self.process,
            log_path=self.log_path,
        )

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)

    def __enter__(self) -> TemporalDevServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
