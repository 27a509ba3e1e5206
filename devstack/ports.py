"""Free-port helpers: tests and the dev stack never assume a fixed port is available.

Example::

    s3_port, sim_port = free_ports(2)
    ...start something on sim_port...
    wait_for_port("127.0.0.1", sim_port, timeout=10)
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import Collection

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (the kernel's pick); races are possible but rare."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK, avoid: Collection[int] = ()) -> list[int]:
    """`count` distinct free ports, none of them in `avoid` (ports promised to servers that may
    not listen yet: the kernel would hand them out again).

    All sockets stay bound until every port is picked, so the kernel cannot hand out the same
    port twice (which it may do for consecutive bind/close pairs).
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            port = sock.getsockname()[1]
            if port not in avoid:  # an avoided one stays bound too, so it is not offered again
                ports.append(port)
        return ports


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True if a server could listen on host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so a port in TIME_WAIT is usable by them: mirror that,
        # or a just-stopped stack would look "taken" for a minute.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_is_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Blocks until host:port accepts connections; raises TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not port_is_listening(host, port):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f} s")
        time.sleep(0.05)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket process `pid` listens on (Linux /proc), IPv4 and IPv6."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except (FileNotFoundError, PermissionError):
        return []
    found: list[tuple[str, int]] = []
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as handle:
                rows = handle.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            # st == 0A is TCP_LISTEN.
            if fields[3] != "0A" or fields[9] not in inodes:
                continue
            address, port = fields[1].rsplit(":", 1)
            found.append((_decode_ip(address), int(port, 16)))
    return found


def _decode_ip(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))
