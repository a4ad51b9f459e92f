"""How `make test` splits the suite over two pytest-xdist workers: every module that needs the demo
state (the session's `demo_run`, directly or through a fixture built on it) runs on one worker, so the
demo runs once and those tests keep their order; every other module is a unit of its own, so a
module's fixtures (live servers, a trained backbone) are built once.

xdist's own `--dist loadgroup` marks are not used: xdist 3.8 tags the node id through an attribute
pytest 9.2 no longer reads, so every marked test became a group of its own.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = "demo-state"
# Seconds a module took in a measured run (the slowest ones; the rest count half a second a test).
# Only the order of the work depends on them: the longest first, so that no long module starts last
# while the other worker has nothing left to do. A stale figure costs time, never a result.
EXPECTED_S = {
    DEMO: 1e6,  # the demo state and its tests: always first, on a worker of its own for most of the run
    "tests/integration/test_live_servers.py": 100,
    "tests/integration/test_one_click.py": 90,
    "tests/cli/test_no_leftovers.py": 40,
    "tests/models/pretraining/test_training_system.py": 35,
    "tests/cli/test_cli_and_dvc.py": 30,
    "tests/store/test_ingest_sources.py": 28,
    "tests/models/pretraining/test_pretrain.py": 25,
    "tests/infra/test_infra_profiles.py": 25,
    "tests/cli/test_review.py": 20,
    "tests/models/pretraining/test_resume.py": 20,
    "tests/infra/test_launch_templates.py": 20,
    "tests/tracking/test_register_concurrently.py": 16,
    "tests/models/pretraining/test_pretrain_data.py": 15,
    "tests/serving/test_exposure.py": 15,
}


def expected_seconds(unit: str, n_tests: int) -> float:
    return EXPECTED_S.get(unit, 0.5 * n_tests)


def _functions(path: Path) -> list[ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]


def _params(fn: ast.FunctionDef) -> set[str]:
    return {a.arg for a in fn.args.args + fn.args.kwonlyargs}


@cache
def _fixtures(path: Path) -> dict[str, frozenset[str]]:
    """The fixtures a file defines, each with the fixtures it asks for."""
    return {
        fn.name: frozenset(_params(fn))
        for fn in _functions(path)
        if any("fixture" in ast.unparse(d) for d in fn.decorator_list)
    }


def _visible(path: Path) -> dict[str, frozenset[str]]:
    """The fixtures a test module sees: the conftests from tests/ down to its folder, then its own."""
    folders = [p for p in reversed(path.parents) if p == ROOT / "tests" or (ROOT / "tests") in p.parents]
    visible: dict[str, frozenset[str]] = {}
    for folder in folders:
        if (folder / "conftest.py").is_file():
            visible.update(_fixtures(folder / "conftest.py"))
    visible.update(_fixtures(path))
    return visible


def _needs_demo(name: str, visible: dict[str, frozenset[str]], seen: frozenset[str] = frozenset()) -> bool:
    if name == "demo_run":
        return True
    return name not in seen and any(_needs_demo(p, visible, seen | {name}) for p in visible.get(name, ()))


@cache
def scope(module: str) -> str:
    """The unit of work of a test module (its path relative to the repository)."""
    path = ROOT / module
    if path.suffix == ".py" and path.is_file():
        visible = _visible(path)
        tests = [fn for fn in _functions(path) if fn.name.startswith("test")]
        if any(_needs_demo(p, visible) for fn in tests for p in _params(fn)):
            return DEMO
    return module
