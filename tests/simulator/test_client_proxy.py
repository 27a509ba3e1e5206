"""The provider client honours the environment's proxy (HTTPS_PROXY, NO_PROXY, the proxy's
credentials), read once when the client is made. Real stack: the simulator over TLS behind a
real CONNECT proxy (a tunnel, as a corporate egress proxy is)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from simulator.testing import SimulatorHandle

PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def connect_proxy() -> AsyncIterator[tuple[str, list[tuple[str, str | None]]]]:
    """A CONNECT proxy on a free port: its address, and each tunnel it was asked for (the
    target and the Proxy-Authorization)."""
    tunnels: list[tuple[str, str | None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        fields = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
        }
        tunnels.append((target, fields.get("proxy-authorization")))
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        host, _, port = target.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"127.0.0.1:{port}", tunnels


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


@pytest.mark.parametrize("credentials", ["egress:s3cret", None])
async def test_requests_go_through_the_environments_proxy_with_its_credentials(
    sim: SimulatorHandle, no_proxy_settings: pytest.MonkeyPatch, credentials: str | None
) -> None:
    async with connect_proxy() as (proxy, tunnels):
        userinfo = f"{credentials}@" if credentials else ""
        no_proxy_settings.setenv("HTTPS_PROXY", f"http://{userinfo}{proxy}")
        client = sim.client()
        # Read once, when the client is made: a later change of the environment is not seen.
        no_proxy_settings.delenv("HTTPS_PROXY")
        async with client:
            task = await client.create_task(
                {"prompt": "through the proxy", "duration": 4, "quality": "480p", "generate_audio": False}
            )
            assert (await client.get_task(task.id)).id == task.id
    simulator = sim.base_url.removeprefix("https://")
    assert tunnels, "the client did not use the proxy"
    assert {target for target, _ in tunnels} == {simulator}
    # The proxy's own credentials, never the provider's API key.
    expected = "Basic " + base64.b64encode(credentials.encode()).decode() if credentials else None
    assert all(auth == expected for _, auth in tunnels), tunnels


async def test_no_proxy_sends_the_provider_directly(
    sim: SimulatorHandle, no_proxy_settings: pytest.MonkeyPatch
) -> None:
    async with connect_proxy() as (proxy, tunnels):
        no_proxy_settings.setenv("HTTPS_PROXY", f"http://{proxy}")
        no_proxy_settings.setenv("NO_PROXY", "127.0.0.1,localhost")
        async with sim.client() as client:
            task = await client.create_task(
                {"prompt": "not through the proxy", "duration": 4, "quality": "480p", "generate_audio": False}
            )
    assert task.id
    assert tunnels == []
