"""A local certificate authority for the dev stack and tests.

The provider only calls HTTPS callback URLs, so even on a laptop the API and the simulator
serve TLS; clients trust `ca.pem` instead of turning verification off.

Example (a pytest session fixture)::

    @pytest.fixture(scope="session")
    def dev_tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
        return make_dev_ca(tmp_path_factory.mktemp("tls"))

    # uvicorn: ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key)
    # httpx:   httpx.Client(verify=tls.ssl_context())
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from devstack.files import write_private

# The names local clients dial: both, because some resolve localhost and some use the IP.
SERVER_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_dev_ca(directory: Path) -> TLSFiles:
    """Writes (or reuses) `ca.pem`, `server.pem` and `server-key.pem` in `directory`.

    Existing files are kept so that clients which already trust the CA keep working across
    restarts of the dev stack.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server-key.pem")
    if files.ca.is_file() and files.cert.is_file() and files.key.is_file():
        return files

    ca = trustme.CA()
    server = ca.issue_cert(*SERVER_NAMES)
    ca.cert_pem.write_to_path(str(files.ca))
    # The chain file holds the leaf first, as uvicorn's ssl_certfile expects.
    files.cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    write_private(files.key, server.private_key_pem.bytes())
    return files
