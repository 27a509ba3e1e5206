"""Result downloads go only where the provider serves results, never inside our network: every
redirect hop is checked by netguard and each connection goes to the address that was checked.

The activity runs for real (`ActivityEnvironment`) against a real HTTPS server and SeaweedFS."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest
from minio import Minio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.rehost import RehostActivities
from devstack.seaweed import SeaweedServer
from devstack.testbed import rehost_job
from devstack.tls import TLSFiles
from netguard import SyncResolver, system_resolver_sync
from settings import Settings
from tests.helpers.api import PNG, ImageServer, RebindingDns
from workflows.models import ActivityErrorType

NO_STORE = Minio("127.0.0.1:1", secure=False)  # refusals happen before any S3 call


@pytest.fixture(scope="module")
def images(dev_tls: TLSFiles) -> Iterator[ImageServer]:
    with ImageServer(dev_tls) as server:
        yield server


def rehost(
    store: Minio = NO_STORE,
    *,
    tls: TLSFiles | None = None,
    resolver: SyncResolver = system_resolver_sync,
    bucket: str = "videos",
    **overrides: object,
) -> RehostActivities:
    settings = Settings(
        _env_file=None,
        gptimage2_base_url=str(overrides.pop("provider", "https://api.gptimage2.example")),
        s3_bucket=bucket,
        gptimage2_ca_file=str(tls.ca) if tls else None,
        **overrides,  # type: ignore[arg-type]
    )
    return RehostActivities(
        settings,
        store,
        resolver=resolver,
        timeout=httpx.Timeout(5.0, connect=2.0),
    )


def refused(activities: RehostActivities, url: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(activities.rehost_result, rehost_job(url))
    assert caught.value.type == ActivityErrorType.RESULT_HOST_REFUSED and caught.value.non_retryable
    return caught.value


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.mp4",
        "http://2130706433/x.mp4",
        "http://0x7f.1/x.mp4",
        "http://[::1]/x.mp4",
        "http://[::ffff:127.0.0.1]/x.mp4",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/x.mp4",
        "http://localhost/x.mp4",
        "http://metadata.google.internal/x",
        "ftp://api.gptimage2.example/x.mp4",
        "http://intranet/x.mp4",
    ],
)
def test_private_or_odd_result_hosts_are_refused(url: str) -> None:
    refused(rehost(), url)


def test_with_an_allowlist_other_public_hosts_are_refused() -> None:
    error = refused(rehost(result_hosts=["cdn.example.net"]), "https://elsewhere.example.org/v.mp4")
    assert "elsewhere.example.org is not on the allow-list" in error.message


def test_a_listed_host_is_downloaded_and_stored(
    images: ImageServer, dev_tls: TLSFiles, s3: SeaweedServer
) -> None:
    # "localhost" resolves to loopback: allowed only because RESULT_HOSTS names it (dev stack).
    activities = rehost(s3.minio_client(), tls=dev_tls, bucket=s3.bucket, result_hosts=["LOCALHOST."])
    output = ActivityEnvironment().run(activities.rehost_result, rehost_job(images.url("/ok.png")))
    assert output.sha256 == hashlib.sha256(PNG).hexdigest() and output.size_bytes == len(PNG)


@pytest.mark.parametrize(
    "hostile",
    [
        "http://127.0.0.1:{port}/ok.png",  # the same server by address: not the listed name
        "https://[::ffff:127.0.0.1]:{port}/ok.png",
        "http://169.254.169.254/latest/meta-data/",
        "https://elsewhere.example.org/ok.png",
    ],
)
def test_a_redirect_off_the_allowlist_is_refused(
    images: ImageServer, dev_tls: TLSFiles, hostile: str
) -> None:
    activities = rehost(tls=dev_tls, result_hosts=["localhost"])
    before = len(images.requests)
    refused(activities, images.url(f"/to?url={hostile.format(port=images.port)}"))
    assert images.requests[before:] == [f"/to?url={hostile.format(port=images.port)}"]


def test_without_an_allowlist_a_redirect_inside_is_refused(images: ImageServer, dev_tls: TLSFiles) -> None:
    # The provider's own host (here localhost) is trusted; where it redirects to is checked.
    activities = rehost(tls=dev_tls, provider=images.url("/"))
    error = refused(activities, images.url(f"/to?url=https://127.0.0.1:{images.port}/ok.png"))
    assert "loopback" in error.message


@pytest.mark.parametrize("via_redirect", [False, True], ids=["result-url", "redirect"])
def test_a_name_that_rebinds_to_loopback_is_never_connected_to(
    images: ImageServer, dev_tls: TLSFiles, via_redirect: bool
) -> None:
    # First lookup public (passes the check), every later one 127.0.0.1, where the image server
    # listens. A client that resolved again to connect would fetch from inside; a pinned one
    # connects to the public address (unreachable here) and fails.
    name = "rebind.ssrf-test.example"
    dns = RebindingDns({name: [["93.184.216.34"], ["127.0.0.1"]]})
    activities = rehost(tls=dev_tls, resolver=dns, provider=images.url("/"))
    rebinding = f"https://{name}:{images.port}/ok.png"
    url = images.url(f"/to?url={rebinding}") if via_redirect else rebinding
    before = len(images.requests)
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(activities.rehost_result, rehost_job(url))
    assert "could not" in caught.value.message and not caught.value.non_retryable
    assert "/ok.png" not in images.requests[before:]
    assert dns.lookups[name] == 1


def test_connections_go_to_the_address_that_was_checked(
    images: ImageServer, dev_tls: TLSFiles, s3: SeaweedServer
) -> None:
    # Allowed name, first answer 127.0.0.1 (the server), later answers 127.0.0.2 (nothing
    # there): the download succeeds only if it connects where the one lookup pointed.
    dns = RebindingDns({"localhost": [["127.0.0.1"], ["127.0.0.2"]]})
    activities = rehost(
        s3.minio_client(), tls=dev_tls, bucket=s3.bucket, resolver=dns, result_hosts=["localhost"]
    )
    output = ActivityEnvironment().run(activities.rehost_result, rehost_job(images.url("/ok.png")))
    assert output.size_bytes == len(PNG) and dns.lookups["localhost"] == 1
