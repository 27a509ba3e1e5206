"""promtool, Prometheus's rule checker, without Docker: `python -m devstack.promtool` prints its
path, fetching it first if needed (`make promtool`; `make test` runs it).

Found, in order: $PROMTOOL, `.local/tools/promtool` in the checkout, `promtool` on PATH. Else it
is taken from Debian's `prometheus` package (`apt-get download`, after one `apt-get update` if
the package lists are missing, then `dpkg-deb -x`) into `.local/tools/`. Where that cannot work
(no apt, no network) it stops with a message saying what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS = REPO_ROOT / ".local" / "tools"
PACKAGE = "prometheus"


class PromtoolUnavailable(RuntimeError):
    pass


def promtool() -> Path:
    """The path of a working promtool, fetched into .local/tools/ when there is none."""
    for candidate in (os.environ.get("PROMTOOL"), TOOLS / "promtool", shutil.which("promtool")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return _fetch()


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def _fetch() -> Path:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise PromtoolUnavailable(
            "promtool not found and this is no Debian system (apt-get, dpkg-deb): install Prometheus's "
            "promtool (https://prometheus.io/download/) and put it on PATH or in PROMTOOL"
        )
    with tempfile.TemporaryDirectory(prefix="promtool-") as tmp:
        work = Path(tmp)
        download = _run(["apt-get", "download", PACKAGE], work)
        if download.returncode != 0:
            # A fresh image has no package lists yet: fetch them once, then retry.
            update = _run(["apt-get", "update"], work)
            download = _run(["apt-get", "download", PACKAGE], work)
            if download.returncode != 0:
                raise PromtoolUnavailable(
                    f"could not download Debian's {PACKAGE} package for promtool "
                    f"(apt-get update: {update.stderr.strip()[-300:] or 'ok'}; "
                    f"apt-get download: {download.stderr.strip()[-300:]}); install promtool and put it "
                    "on PATH or in PROMTOOL"
                )
        [deb] = work.glob(f"{PACKAGE}_*.deb")
        extracted = work / "root"
        unpack = _run(["dpkg-deb", "-x", str(deb), str(extracted)], work)
        binary = extracted / "usr" / "bin" / "promtool"
        if unpack.returncode != 0 or not binary.is_file():
            raise PromtoolUnavailable(f"{deb.name} holds no usr/bin/promtool: {unpack.stderr.strip()}")
        TOOLS.mkdir(parents=True, exist_ok=True)
        target = TOOLS / "promtool"
        staged = TOOLS / f".promtool-{os.getpid()}"
        shutil.copy2(binary, staged)
        staged.replace(target)  # atomic: a concurrent run sees the old file or the whole new one
    return target


def main() -> None:
    try:
        print(promtool())
    except PromtoolUnavailable as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
