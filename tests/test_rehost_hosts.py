"""Result downloads go only where the provider serves results: never inside our network."""

from __future__ import annotations

import pytest
from minio import Minio
from temporalio.exceptions import ApplicationError

from activities.rehost import RehostActivities
from settings import Settings
from workflows.models import ActivityErrorType


def rehost(**overrides: object) -> RehostActivities:
    settings = Settings(_env_file=None, gptimage2_base_url="https://api.gptimage2.example", **overrides)  # type: ignore[arg-type]
    return RehostActivities(settings, Minio("127.0.0.1:1", secure=False))


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
    with pytest.raises(ApplicationError) as caught:
        rehost()._check_host(url)
    assert caught.value.type == ActivityErrorType.RESULT_HOST_REFUSED and caught.value.non_retryable


def test_provider_host_and_listed_hosts_are_allowed() -> None:
    guard = rehost(result_hosts=["cdn.example.net", "127.0.0.1"])
    guard._check_host("https://api.gptimage2.example/results/1.mp4")
    guard._check_host("https://CDN.example.net./v/1.mp4")
    guard._check_host("http://127.0.0.1:9100/results/1.mp4")  # listed explicitly (dev stack)


def test_with_an_allowlist_other_public_hosts_are_refused() -> None:
    with pytest.raises(ApplicationError, match="RESULT_HOSTS"):
        rehost(result_hosts=["cdn.example.net"])._check_host("https://elsewhere.example.org/v.mp4")
