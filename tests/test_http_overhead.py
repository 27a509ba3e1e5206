"""What an outbound async httpx request costs beyond the request itself.

httpcore (under httpx) asks which async library runs it for every lock, event and shielded
close it sets up, by importing `sniffio`; a failed import is not cached, so without sniffio
installed each of those searches sys.path again: a few path searches per request
(encode/httpcore#1103), e.g. each of netguard's image checks (the provider client is on
aiohttp since). pyproject.toml therefore depends on sniffio directly.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

from httpcore._synchronization import current_async_library


class _CountingFinder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.searches: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        self.searches.append(fullname)
        return None


async def test_httpcore_finds_its_async_library_without_searching_the_import_path() -> None:
    finder = _CountingFinder()
    sys.meta_path.insert(0, finder)
    try:
        for _ in range(10):
            assert current_async_library() == "asyncio"
    finally:
        sys.meta_path.remove(finder)
    assert finder.searches == [], f"each call searched the import path for {sorted(set(finder.searches))}"
