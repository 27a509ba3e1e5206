"""The import graph's rules, read from the source (no imports run): a part may use the parts
below it, never a side-effecting part beside it.

The API validates, signs and signals; it never runs an activity, so it must not import
`activities/` (nor `worker.py`, which imports them): storage signing, which both use, lives in
the top-level `storage.py`. The CLI (`starter.py`) starts and reads generations the same way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# part (a package folder or a top-level module) -> top-level modules it must not import
FORBIDDEN = {"api": ("activities", "worker"), "starter.py": ("activities", "worker")}


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved within
    `package`)."""
    parts = [package, *path.relative_to(ROOT / package).parent.parts] if package else []
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + 1]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                found.add(node.module)
    return found


def violations(part: str, forbidden: tuple[str, ...]) -> list[str]:
    module = part.endswith(".py")
    return sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in ([ROOT / part] if module else (ROOT / part).rglob("*.py"))
        for name in imported_modules(path, "" if module else part)
        if name.split(".")[0] in forbidden
    )


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_part_imports_nothing_forbidden(part: str) -> None:
    assert violations(part, FORBIDDEN[part]) == []


def test_the_check_sees_absolute_and_relative_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walker itself: a forbidden import in any spelling is reported."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    sub = tmp_path / "api" / "routers"
    sub.mkdir(parents=True)
    (tmp_path / "api" / "a.py").write_text("import activities.rehost\nfrom settings import Settings\n")
    (sub / "b.py").write_text("from ..service import x\nfrom worker import build_worker\n")
    (sub / "c.py").write_text("def f():\n    from activities import provider\n")
    assert imported_modules(sub / "b.py", "api") == {"api.service", "worker"}
    assert violations("api", ("activities", "worker")) == [
        "api/a.py imports activities.rehost",
        "api/routers/b.py imports worker",
        "api/routers/c.py imports activities",
    ]
    (tmp_path / "cli.py").write_text("from worker import connect\n")
    assert violations("cli.py", ("worker",)) == ["cli.py imports worker"]
