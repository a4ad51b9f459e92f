"""What each cached result is keyed by, and what a registered model ships: the import closure
of the code that makes it (infra/code_version.py), nothing more."""

from __future__ import annotations

import shutil
import subprocess
import sys

import torch

from infra.code_version import REPO, closure, digest
from tasks.onboard import ADAPT_CODE, EVALUATE_CODE
from tasks.pretrain import TRAINER_CODE
from tracking.model_logging import code_tree, shipped_files

PACKAGES = ("models", "store", "infra", "evaluation", "reports", "serving", "tracking", "tasks", "flows", "tsfm_cli")


def _rel(paths) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in paths}


def test_closures_follow_imports_and_stop_at_the_repository():
    trainer = _rel(closure(TRAINER_CODE))
    assert {
        "models/pretraining/train.py",
        "models/pretraining/module.py",
        "models/backbone/network.py",
        "models/metrics.py",
        "store/corpus.py",
        "store/canonical.py",
    } <= trainer  # lazy imports count
    adapt = _rel(closure(ADAPT_CODE))
    assert {"models/memory/onboarding.py", "models/memory/teacher.py", "models/forecasting/fused.py"} <= adapt
    for keyed in (trainer, adapt):
        assert not any(
            p.startswith(("serving/", "tsfm_cli/", "evaluation/", "reports/", "tracking/", "flows/")) for p in keyed
        ), keyed
    evaluate = _rel(closure(EVALUATE_CODE))
    assert "evaluation/baselines.py" in evaluate and "models/memory/distill.py" not in evaluate


def test_editing_the_server_cli_or_evaluation_keeps_every_key_and_editing_the_model_changes_them(tmp_path):
    root = tmp_path / "repo"
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))

    def keys() -> dict[str, str]:
        return {
            name: digest(mods, root=root)
            for name, mods in (("pretrain", TRAINER_CODE), ("adapt", ADAPT_CODE), ("evaluate", EVALUATE_CODE))
        }

    before = keys()
    for path in ("serving/app.py", "tsfm_cli/main.py", "models/forecasting/protocol.py", "tracking/registry.py"):
        (root / path).write_text((root / path).read_text() + "\n# an edit\n")
    assert keys() == before  # nothing retrains, nothing re-adapts, nothing is re-evaluated
    for path in ("evaluation/domain.py", "reports/tables.py"):  # the evaluation and the tables it writes
        (root / path).write_text((root / path).read_text() + "\n# an edit\n")
        after = keys()
        assert after["evaluate"] != before["evaluate"], path  # the evaluation reruns ...
        assert after["pretrain"] == before["pretrain"] and after["adapt"] == before["adapt"], path  # ... only it
        before = after
    (root / "models/backbone/network.py").write_text((root / "models/backbone/network.py").read_text() + "\n# x\n")
    changed = keys()
    assert changed["pretrain"] != after["pretrain"] and changed["adapt"] != after["adapt"]


def test_a_registered_model_ships_only_what_loads_and_predicts_and_that_is_enough(tmp_path):
    fused = _rel(shipped_files("fused"))
    assert {
        "models/forecasting/fused.py",
        "models/forecasting/protocol.py",
        "models/backbone/network.py",
        "models/memory/adapter.py",
    } <= fused
    assert not any(p.startswith("models/pretraining/") for p in fused)
    assert not {"models/memory/teacher.py", "models/memory/onboarding.py", "models/memory/distill.py"} & fused
    assert "models/memory/teacher.py" in _rel(shipped_files("teacher"))
    assert all(
        p.startswith("models/")
        for kind in ("backbone", "teacher", "adapter", "fused")
        for p in _rel(shipped_files(kind))
    )

    # the shipped tree alone (no repository on the path) loads a saved fused model and forecasts
    from models.backbone.network import PatchBackbone
    from models.backbone.presets import get_preset
    from models.forecasting.fused import FusedForecaster
    from models.memory.adapter import AdapterShape, MemoryAdapter

    torch.manual_seed(0)
    FusedForecaster(PatchBackbone(get_preset("tiny")), MemoryAdapter(AdapterShape(64, 4, hidden=8)), 0.5, 32, 4).save(
        tmp_path / "fused"
    )
    code = code_tree("fused", tmp_path / "code")
    script = (
        "import sys, numpy as np\n"
        "from models.forecasting.kinds import load_forecaster\n"
        "from models.forecasting.protocol import forecast_frame\n"
        f"fc = load_forecaster('fused', {str(tmp_path / 'fused')!r})\n"
        "q = fc.predict([np.arange(40, dtype=np.float32)], 4).quantiles\n"
        "import models.forecasting.fused as f\n"
        "print(q.shape, f.__file__)\n"
    )
    res = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(code.parent)!r})\n" + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    shape, used = res.stdout.split()[:3], res.stdout.split()[-1]
    assert " ".join(shape) == "(1, 4, 9)" and used.startswith(str(code)), res.stdout  # the shipped copy ran
