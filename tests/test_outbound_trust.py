"""One trust rule for outbound TLS (`settings.outbound_trust`): the public CAs plus
GPTIMAGE2_CA_FILE. The API's image check, the worker's re-check before the create, result
downloads and the provider client all use it, so a host one accepts the others accept too.
(Before, the worker trusted only GPTIMAGE2_CA_FILE when it was set: an image on a public host
that the API had accepted failed the worker's re-check.)

Real handshakes against real HTTPS servers: one whose certificate comes from a CA standing in
for the public ones (certifi's bundle is pointed at it), one from a private CA.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import certifi
import httpx
import pytest

from devstack.tls import TLSFiles, make_dev_ca
from settings import DEV_ENVIRONMENT, Settings, outbound_trust
from tests.helpers.api import ImageServer

ROOT = Path(__file__).resolve().parent.parent
# Product code that connects out; each must take its SSL context from outbound_trust.
OUTBOUND_CALLERS = ["api", "activities", "worker.py", "starter.py", "storage.py"]
TRUST_BUILDERS = {("ssl", "create_default_context"), ("ssl", "SSLContext"), ("certifi", "where")}


@pytest.fixture(scope="module")
def public_ca(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_dev_ca(tmp_path_factory.mktemp("public-ca"))


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_dev_ca(tmp_path_factory.mktemp("private-ca"))


@pytest.fixture
def public_host(public_ca: TLSFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImageServer]:
    """An HTTPS host whose CA is, for this test, among the public ones."""
    monkeypatch.setattr(certifi, "where", lambda: str(public_ca.ca))
    with ImageServer(public_ca) as server:
        yield server


@pytest.fixture
def private_host(private_ca: TLSFiles) -> Iterator[ImageServer]:
    with ImageServer(private_ca) as server:
        yield server


def settings(ca_file: Path | None) -> Settings:
    return Settings(
        environment=DEV_ENVIRONMENT, gptimage2_ca_file=str(ca_file) if ca_file else None, _env_file=None
    )


def fetches(trust_of: Settings, server: ImageServer) -> bool:
    try:
        with httpx.Client(verify=outbound_trust(trust_of), timeout=5) as http:
            return http.get(server.url("/ok.png")).status_code == 200
    except httpx.ConnectError as exc:
        assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
        return False


def test_the_configured_ca_is_added_to_the_public_ones(
    public_host: ImageServer, private_host: ImageServer, private_ca: TLSFiles
) -> None:
    configured = settings(private_ca.ca)
    assert fetches(configured, public_host)
    assert fetches(configured, private_host)


def test_without_a_ca_file_only_public_hosts_are_trusted(
    public_host: ImageServer, private_host: ImageServer
) -> None:
    assert fetches(settings(None), public_host)
    assert not fetches(settings(None), private_host)


def test_a_ca_file_does_not_vouch_for_another_private_ca(private_host: ImageServer, tmp_path: Path) -> None:
    other = make_dev_ca(tmp_path / "other")
    assert not fetches(settings(other.ca), private_host)


def ssl_contexts_built(path: Path) -> list[str]:
    """The calls in `path` that build a trust store (TRUST_BUILDERS)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        func = node.func
        if isinstance(func.value, ast.Name) and (func.value.id, func.attr) in TRUST_BUILDERS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {func.value.id}.{func.attr}")
    return found


def test_outbound_callers_build_no_trust_of_their_own() -> None:
    paths = [
        p
        for name in OUTBOUND_CALLERS
        for p in ([ROOT / name] if name.endswith(".py") else (ROOT / name).rglob("*.py"))
    ]
    assert [hit for path in paths for hit in ssl_contexts_built(path)] == []
    # The check sees what it looks for: settings.py builds the one context.
    assert len(ssl_contexts_built(ROOT / "settings.py")) == 2
