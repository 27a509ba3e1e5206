"""SeaweedFS `weed mini` as a local S3-compatible store, with credentials required.

`weed mini` runs master, volume, filer, S3 and admin servers in one process. Left to its
defaults it listens on every interface, lets anonymous clients read and write through S3, and
serves an unauthenticated filer; `start` closes all three: loopback only, an `s3.json` with
one admin identity, and a `security.toml` with random JWT keys (the filer then answers 401).

Example (a pytest session fixture)::

    @pytest.fixture(scope="session")
    def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
        server = SeaweedServer.start(tmp_path_factory.mktemp("seaweed"))
        try:
            server.wait_ready(timeout=60)
            yield server  # server.endpoint, .access_key, .secret_key, .bucket, .minio_client()
        finally:
            server.stop()
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import AbortIncompleteMultipartUpload, LifecycleConfig, Rule

from devstack.files import write_private
from devstack.ports import LOOPBACK, free_ports
from devstack.processes import find_binary, spawn, stop_process, wait_until

# Every listener `weed mini` opens besides the S3 one; the gRPC ports would otherwise default
# to http port + 10000 and collide with whatever else runs on the machine.
INTERNAL_PORTS = (
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
REGION = "us-east-1"
LOG_NAME = "weed.log"
# A multipart upload nobody finished (a re-host whose worker died for good) is billed by real S3
# until aborted: the bucket aborts them this many days after they began. Far longer than any
# copy, whose deadline is its result link's 24 h.
ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS = 1
ABORT_INCOMPLETE_UPLOADS_RULE = "abort-incomplete-uploads"


def new_access_key() -> str:
    return "AK" + secrets.token_hex(9).upper()


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)


def write_s3_config(path: Path, access_key: str, secret_key: str) -> None:
    """One admin identity; with any identity configured weed refuses anonymous requests."""
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    write_private(path, json.dumps(identities, indent=2).encode())


def write_security_toml(directory: Path) -> Path:
    """JWT keys that lock the filer and volume HTTP ports (S3 signs its own internal calls).

    Fresh keys each start are fine: tokens live for seconds and nothing outside weed holds one.
    """
    sections = ["jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read"]
    text = "".join(
        f'[{name}]\nkey = "{secrets.token_urlsafe(32)}"\nexpires_after_seconds = 60\n\n' for name in sections
    )
    path = directory / "security.toml"
    write_private(path, text.encode())
    return path


def weed_argv(
    *,
    data_dir: Path,
    config_dir: Path,
    s3_config: Path,
    s3_port: int,
    internal_ports: Mapping[str, int],
    bucket: str,
    host: str = LOOPBACK,
) -> list[str]:
    """The full `weed mini` command line (exposed for launchers that track pids themselves)."""
    argv = [
        find_binary("weed"),
        # Logs to stderr, which the launcher sends to a file in the workdir; glog would
        # otherwise scatter weed.INFO files into the system temp folder.
        "-logtostderr=true",
        f"-config_dir={config_dir}",
        "mini",
        f"-dir={data_dir}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-s3.port={s3_port}",
        f"-s3.config={s3_config}",
        f"-bucket={bucket}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # No phoning home from a test machine.
        "-master.telemetry=false",
    ]
    argv += [f"-{flag}={port}" for flag, port in internal_ports.items()]
    return argv


@dataclass
class SeaweedServer:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def s3_port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        s3_port: int | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        bucket: str = "videos",
        internal_ports: Mapping[str, int] | None = None,
        avoid_ports: Iterable[int] = (),
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> SeaweedServer:
        """Starts `weed mini` in workdir (data in workdir/data, log in workdir/weed.log).

        Keys default to fresh random ones; ports not given are free ports. Returns at once:
        call `wait_ready` before use.
        """
        workdir = workdir.resolve()
        data_dir = workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        access_key = access_key or new_access_key()
        secret_key = secret_key or new_secret_key()
        chosen = dict(internal_ports or {})
        missing = [name for name in INTERNAL_PORTS if name not in chosen]
        picked = free_ports(len(missing) + (1 if s3_port is None else 0), avoid=set(avoid_ports))
        chosen.update(zip(missing, picked, strict=False))
        if s3_port is None:
            s3_port = picked[-1]

        s3_config = workdir / "s3.json"
        write_s3_config(s3_config, access_key, secret_key)
        write_security_toml(workdir)
        log_path = log_path or workdir / LOG_NAME
        process = spawn(
            weed_argv(
                data_dir=data_dir,
                config_dir=workdir,
                s3_config=s3_config,
                s3_port=s3_port,
                internal_ports=chosen,
                bucket=bucket,
            ),
            cwd=workdir,
            log_path=log_path,
            env=env,
            die_with_parent=die_with_parent,
        )
        return cls(
            endpoint=f"{LOOPBACK}:{s3_port}",
            access_key=access_key,
            secret_key=secret_key,
            bucket=bucket,
            process=process,
            workdir=workdir,
            log_path=log_path,
            ports={"s3.port": s3_port, **chosen},
        )

    def minio_client(self, *, timeout: float = 30.0, retries: bool = True) -> Minio:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            retries=urllib3.Retry(total=3, backoff_factor=0.2) if retries else False,
        )
        # An explicit region spares the SDK a bucket-location request before every call.
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=REGION,
            http_client=http,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Blocks until an authenticated PUT into the bucket succeeds and the bucket's lifecycle
        rule is in place (`bucket_ready`).

        weed answers S3 about a second before it can store anything (the volume server
        registers with the master after that), so only a real write proves readiness.
        """
        wait_until(
            lambda: bucket_ready(self.endpoint, self.access_key, self.secret_key, self.bucket),
            timeout=timeout,
            what="SeaweedFS (weed mini)",
            process=self.process,
            log_path=self.log_path,
            interval=0.2,
        )

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)
        remove_unix_sockets(self.ports.values())

    def __enter__(self) -> SeaweedServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def remove_unix_sockets(ports: Iterable[int]) -> None:
    """Deletes the unix sockets weed leaves in the temp folder (named by port, so ours alone).

    weed never unlinks them and has no flag for some of them; without this every test run
    would leave a handful behind in /tmp.
    """
    temp = Path(tempfile.gettempdir())
    for port in ports:
        for stale in temp.glob(f"seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                if stale.is_socket():
                    stale.unlink()


def abort_incomplete_uploads_rule() -> LifecycleConfig:
    """The lifecycle configuration every videos bucket gets (S3's PutBucketLifecycleConfiguration;
    SeaweedFS accepts and returns it; MinIO does not take it and expires stale uploads by its
    own `api.stale_uploads_expiry`, set in docker-compose.yml)."""
    return LifecycleConfig(
        [
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=""),
                rule_id=ABORT_INCOMPLETE_UPLOADS_RULE,
                abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(
                    ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS
                ),
            )
        ]
    )


def bucket_ready(endpoint: str, access_key: str, secret_key: str, bucket: str) -> bool:
    """True once an authenticated PUT works and the bucket aborts incomplete uploads (the rule
    is installed here, idempotently); False while weed is still starting."""
    if not s3_put_works(endpoint, access_key, secret_key, bucket):
        return False
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False)
    client = Minio(
        endpoint, access_key=access_key, secret_key=secret_key, secure=False, region=REGION, http_client=http
    )
    try:
        client.set_bucket_lifecycle(bucket, abort_incomplete_uploads_rule())
    except Exception:
        return False
    finally:
        http.clear()
    return True


def s3_put_works(endpoint: str, access_key: str, secret_key: str, bucket: str) -> bool:
    """One authenticated PUT (then DELETE) of a tiny probe object; False on any failure."""
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False)
    client = Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=False,
        region=REGION,
        http_client=http,
    )
    key = f".devstack/ready-{uuid.uuid4().hex}"
    try:
        client.put_object(bucket, key, io.BytesIO(b"ok"), length=2)
        client.remove_object(bucket, key)
    except Exception:
        # Connection refused, 5xx while the volume server registers, NoSuchBucket while the
        # bucket is being created: all mean "not yet".
        return False
    finally:
        http.clear()
    return True
