"""netguard refuses every way of pointing a fetch inside our network, and reads images with a
few bytes: the checks the API's image validation and the worker's downloads rely on."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import h11
import pytest

from devstack.tls import TLSFiles
from netguard import (
    FetchFailed,
    GuardedClient,
    GuardedSyncClient,
    ImageRejected,
    NetguardError,
    Target,
    UnsafeURL,
    check_url,
    ip_problem,
    parse_ipv4_loose,
    probe_image,
    resolve_public,
    sniff_image_type,
    system_resolver,
)
from tests.helpers.api import JPEG, PNG, WEBP, FakeDns, ImageServer, RebindingDns

MAX = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def images(dev_tls: TLSFiles) -> Iterator[ImageServer]:
    with ImageServer(dev_tls) as server:
        yield server


def guarded(
    tls: TLSFiles, dns: FakeDns | None = None, allowed: tuple[str, ...] = ("localhost",)
) -> GuardedClient:
    return GuardedClient(
        allowed_private_hosts=allowed, resolver=dns or FakeDns(), verify=tls.ssl_context(), timeout=5
    )


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.0x10.0.1", "10.16.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("8.8.8.8.", "8.8.8.8"),
    ],
)
def test_ipv4_is_read_as_inet_aton_reads_it(spelling: str, address: str) -> None:
    assert parse_ipv4_loose(spelling) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize("name", ["example.com", "cdn1.example.com", "1.2.3.example", "0x7f.example"])
def test_names_are_not_mistaken_for_addresses(name: str) -> None:
    assert parse_ipv4_loose(name) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.31.255.255",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert ip_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address: str) -> None:
    assert ip_problem(ipaddress.ip_address(address)) is None


HOSTILE_URLS = [
    "http://example.com/cat.png",
    "http://2130706433/",
    "https://2130706433/",
    "https://0177.0.0.1/",
    "https://0x7f.1/",
    "https://127.1/",
    "https://[::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://169.254.169.254/latest/meta-data/",
    "https://[fd00:ec2::254]/latest/meta-data/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://10.0.0.1/",
    "https://172.16.0.1/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",
    "https://0.0.0.0/",
    "https://[fe80::1]/",
    "https://[fc00::1]/",
    "https://localhost/",
    "https://foo.localhost/",
    "https://example.com@127.0.0.1/",
    "https://user:pass@example.com/",
    "https://metadata/",
    "https://256.0.0.1/",
    "https://1.2.3.4.5/",
    "https://[fe80::1%25eth0]/",
    "https://exa%6dple.com/",
    "https://example.com\\@127.0.0.1/",
    "file:///etc/passwd",
    "gopher://example.com/",
    "https:///nohost",
    "https://example.com:0/",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_urls_are_refused_by_their_text(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url)


def test_allowed_private_hosts_are_the_only_exception() -> None:
    assert check_url(
        "https://localhost:9100/_sim/images/a.png", allowed_private_hosts=["localhost"]
    ).allowed_private
    with pytest.raises(UnsafeURL):
        check_url("https://127.0.0.1:9100/a.png", allowed_private_hosts=["localhost"])
    with pytest.raises(UnsafeURL, match="HTTPS"):
        check_url("http://localhost:9100/a.png", allowed_private_hosts=["localhost"])
    # An allowed address is allowed in every spelling, as it is the same host.
    assert check_url("https://2130706433/", allowed_private_hosts=["127.0.0.1"]).host == "127.0.0.1"


def test_refusals_name_the_host_but_never_the_query() -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url("https://10.0.0.1/x.png?X-Amz-Signature=s3cr3t")
    assert "10.0.0.1" in caught.value.reason
    assert "s3cr3t" not in caught.value.reason


def _target(host: str) -> Target:
    return Target(
        url=f"https://{host}/", scheme="https", host=host, port=443, ip=None,
        allowed_private=False, authority=host, path_and_query="/",
    )  # fmt: skip


async def test_real_dns_answer_for_localhost_is_checked() -> None:
    # The name check would stop "localhost" first; this goes straight to the resolver path
    # with the system's real answer (127.0.0.1 from /etc/hosts), as a DNS name pointing at
    # loopback would.
    assert "127.0.0.1" in await system_resolver("localhost", 443)
    with pytest.raises(UnsafeURL, match=r"resolves to 127\.0\.0\.1, a loopback address"):
        await resolve_public(_target("localhost"))


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["93.184.216.34", "10.0.0.7"],
        ["fd00::1"],
        ["::ffff:169.254.169.254"],
        ["100.100.100.200"],
    ],
)
async def test_every_dns_answer_must_be_public(answers: list[str]) -> None:
    dns = FakeDns({"images.ssrf-test.example": answers})
    with pytest.raises(UnsafeURL):
        await resolve_public(check_url("https://images.ssrf-test.example/a.png"), dns)


async def test_public_dns_answers_pass() -> None:
    dns = FakeDns({"cdn.ssrf-test.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    addresses = await resolve_public(check_url("https://cdn.ssrf-test.example/a.png"), dns)
    assert [str(a) for a in addresses] == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]


async def test_a_name_that_does_not_resolve_is_a_fetch_failure() -> None:
    with pytest.raises(FetchFailed, match="does not resolve"):
        await resolve_public(check_url("https://no-such-host.invalid/a.png"))


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (WEBP, "image/webp"),
        (b"GIF89a" + b"\x00" * 20, None),
        (b"", None),
    ],
)
def test_images_are_recognised_by_their_bytes(head: bytes, kind: str | None) -> None:
    assert sniff_image_type(head) == kind


@pytest.mark.parametrize(
    ("path", "kind", "body"),
    [("/ok.png", "image/png", PNG), ("/ok.jpg", "image/jpeg", JPEG), ("/ok.webp", "image/webp", WEBP)],
)
async def test_probe_reads_type_and_size_from_a_few_bytes(
    images: ImageServer, dev_tls: TLSFiles, path: str, kind: str, body: bytes
) -> None:
    async with guarded(dev_tls) as client:
        info = await probe_image(client, images.url(path), max_bytes=MAX)
    assert (info.content_type, info.size_bytes) == (kind, len(body))


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/fake.png", ImageRejected, "not a JPEG, PNG or WebP"),
        ("/huge.png", ImageRejected, "limit is 10485760 bytes"),
        ("/huge-norange.png", ImageRejected, "limit is 10485760 bytes"),
        ("/missing.png", FetchFailed, "HTTP 404"),
        ("/hops/3", UnsafeURL, "redirects more than 3 times"),
    ],
)
async def test_probe_refuses_what_the_provider_would_not_take(
    images: ImageServer, dev_tls: TLSFiles, path: str, error: type[NetguardError], message: str
) -> None:
    async with guarded(dev_tls) as client:
        with pytest.raises(error, match=message):
            await probe_image(client, images.url(path), max_bytes=MAX)


async def test_probe_follows_up_to_three_checked_redirects(images: ImageServer, dev_tls: TLSFiles) -> None:
    async with guarded(dev_tls) as client:
        info = await probe_image(client, images.url("/hops/2"), max_bytes=MAX)
    assert info.final_url == images.url("/ok.png")


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/ok.png",
        "https://127.0.0.1:{port}/ok.png",  # the same server, by address: refused, not unreachable
        "https://[::ffff:127.0.0.1]:{port}/ok.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://rebind.ssrf-test.example:{port}/ok.png",
    ],
)
async def test_every_redirect_hop_is_checked(images: ImageServer, dev_tls: TLSFiles, target: str) -> None:
    dns = FakeDns({"rebind.ssrf-test.example": ["127.0.0.1"]})
    hostile = target.format(port=images.port)
    async with guarded(dev_tls, dns) as client:
        with pytest.raises(UnsafeURL):
            await probe_image(client, images.url(f"/to?url={hostile}"), max_bytes=MAX)


async def test_connections_go_to_the_checked_address(images: ImageServer, dev_tls: TLSFiles) -> None:
    # "localhost" is allowed and the resolver says 127.0.0.2, where nothing listens: the fetch
    # fails, so the client connected where the check looked instead of resolving again.
    dns = FakeDns({"localhost": ["127.0.0.2"]})
    async with guarded(dev_tls, dns) as client:
        with pytest.raises(FetchFailed, match="could not be reached"):
            await probe_image(client, images.url("/ok.png"), max_bytes=MAX)


async def test_tls_is_verified_against_the_url_name(images: ImageServer, dev_tls: TLSFiles) -> None:
    # The certificate names localhost and 127.0.0.1; any other name on the same address fails.
    dns = FakeDns({"images.ssrf-test.example": ["127.0.0.1"]})
    async with guarded(dev_tls, dns, allowed=("images.ssrf-test.example",)) as client:
        with pytest.raises(FetchFailed):
            await probe_image(client, images.url("/ok.png", host="images.ssrf-test.example"), max_bytes=MAX)


async def test_a_post_is_checked_pinned_and_verified_as_every_request(
    images: ImageServer, dev_tls: TLSFiles
) -> None:
    async with guarded(dev_tls) as client:
        # This server answers no POST: 501, over TLS verified for localhost, a few bytes read.
        answer = await client.post(images.url("/ok.png"), headers={}, content=b"{}", max_bytes=16)
        assert (answer.status_code, len(answer.head)) == (501, 16)
        with pytest.raises(UnsafeURL):
            await client.post("https://169.254.169.254/x", headers={}, content=b"", max_bytes=16)
    pinned = FakeDns({"localhost": ["127.0.0.2"]})  # nothing listens there: no second lookup
    async with guarded(dev_tls, pinned) as client:
        with pytest.raises(FetchFailed, match="could not be reached"):
            await client.post(images.url("/ok.png"), headers={}, content=b"", max_bytes=16)
    renamed = FakeDns({"images.ssrf-test.example": ["127.0.0.1"]})  # not a name the certificate has
    async with guarded(dev_tls, renamed, allowed=("images.ssrf-test.example",)) as client:
        with pytest.raises(FetchFailed):
            url = images.url("/ok.png", host="images.ssrf-test.example")
            await client.post(url, headers={}, content=b"", max_bytes=16)


@asynccontextmanager
async def receiver(*, drop_after_answer: bool) -> AsyncIterator[tuple[str, list[int]]]:
    """An HTTP/1.1 server answering every POST 204 on a kept connection: its URL, and how many
    POSTs each connection it accepted carried. With `drop_after_answer` it closes each one
    right after its answer without saying so, as a server whose idle timeout struck would."""
    carried: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        carried.append(0)
        http = h11.Connection(h11.SERVER)
        try:
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    if not (data := await reader.read(65536)):
                        return
                    http.receive_data(data)
                elif isinstance(event, h11.EndOfMessage):
                    carried[-1] += 1
                    writer.write(http.send(h11.Response(status_code=204, headers=[])))
                    writer.write(http.send(h11.EndOfMessage()))
                    await writer.drain()
                    if drop_after_answer:
                        return
                    http.start_next_cycle()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/hooks", carried


@pytest.mark.parametrize("drop_after_answer", [False, True])
async def test_posts_to_a_host_share_a_kept_connection(drop_after_answer: bool) -> None:
    async with (
        receiver(drop_after_answer=drop_after_answer) as (url, carried),
        GuardedClient(allowed_private_hosts=["127.0.0.1"], schemes=["http"]) as client,
    ):
        for _ in range(3):
            answer = await client.post(url, headers={}, content=b"{}", max_bytes=16)
            assert answer.status_code == 204
    # Kept: one connection carried all three. Dropped while kept: each POST was sent again on a
    # new connection, and every one was answered.
    assert carried == ([1, 1, 1] if drop_after_answer else [3])


# ---- the blocking twin (result downloads in the worker's threads) ---------------------------


def guarded_sync(
    tls: TLSFiles, dns: RebindingDns, allowed: tuple[str, ...] = ("localhost",)
) -> GuardedSyncClient:
    return GuardedSyncClient(allowed_private_hosts=allowed, resolver=dns, verify=tls.ssl_context(), timeout=5)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/ok.png",
        "https://127.0.0.1:{port}/ok.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://rebind.ssrf-test.example:{port}/ok.png",
    ],
)
def test_sync_client_checks_every_redirect_hop(images: ImageServer, dev_tls: TLSFiles, target: str) -> None:
    dns = RebindingDns({"rebind.ssrf-test.example": [["127.0.0.1"]]})
    with guarded_sync(dev_tls, dns) as client, pytest.raises(UnsafeURL):
        with client.stream(images.url(f"/to?url={target.format(port=images.port)}")):
            pass


def test_sync_client_follows_checked_redirects_and_pins(images: ImageServer, dev_tls: TLSFiles) -> None:
    dns = RebindingDns({"localhost": [["127.0.0.1"]] * 4 + [["127.0.0.2"]]})
    with guarded_sync(dev_tls, dns) as client, client.stream(images.url("/hops/2")) as got:
        assert got.response.read() == PNG and got.redirects == 3
    assert dns.lookups["localhost"] == 4  # one lookup per hop, each connection to its answer
    with guarded_sync(dev_tls, dns) as client, pytest.raises(FetchFailed, match="could not be reached"):
        with client.stream(images.url("/ok.png")):  # the 5th answer, 127.0.0.2, has no server
            pass


def test_sync_client_refuses_hosts_outside_only_hosts(images: ImageServer, dev_tls: TLSFiles) -> None:
    with GuardedSyncClient(only_hosts=["cdn.example.net"], verify=dev_tls.ssl_context()) as client:
        with pytest.raises(UnsafeURL, match="not on the allow-list"), client.stream(images.url("/ok.png")):
            pass
