"""Which of the repository's files a piece of code depends on, and a digest of them.

The import closure of a module inside the repository (imports anywhere in a file count,
lazy ones inside functions too; third-party imports are ignored). Cache keys hash the
closure of the code that makes a result, so editing the server, the CLI or the evaluation
never retrains a backbone or re-onboards a domain; a registered model ships the closure of
its forecaster and nothing else.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _is_package(root: Path, name: str) -> bool:
    return (root / name / "__init__.py").is_file()


def module_file(name: str, root: Path = REPO) -> Path | None:
    """``a.b.c`` -> root/a/b/c.py or root/a/b/c/__init__.py (None when neither exists)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Every module name ``path`` imports (``from a import b`` also names ``a.b``, which may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parts, base] if p)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def closure(modules: Iterable[str], root: Path = REPO) -> list[Path]:
    """The repository files the given modules run: themselves, what they import inside the
    repository (transitively) and the ``__init__.py`` of every package on the way."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if not name or not _is_package(root, name.split(".")[0]):
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way are imported too
            path = module_file(".".join(parts[:i]), root)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imports(path, ".".join(parts[:i])))
    return sorted(seen)


def digest(modules: Iterable[str], *extra: str, root: Path = REPO) -> str:
    """sha256 of the closure's files (relative paths and contents) and of ``extra`` texts
    (e.g. the source of the task function that uses them)."""
    h = hashlib.sha256()
    for path in closure(modules, root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    for text in extra:
        h.update(text.encode())
    return h.hexdigest()


@lru_cache(maxsize=None)
def cached_digest(modules: tuple[str, ...], *extra: str) -> str:
    """``digest`` once per process (the files do not change under a running flow)."""
    return digest(modules, *extra)
