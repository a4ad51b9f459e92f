"""Log a saved forecaster folder as an MLflow pyfunc model ("model from code").

The model carries the pyfunc file (``tracking/pyfunc.py``), the forecaster's folder and the
code it needs to load and predict: the import closure of its forecaster module and of the
scoring protocol (``infra.code_version``), copied into a ``models`` package of its own.
Nothing of pre-training, onboarding, serving or the pipeline ships with it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

from infra.code_version import REPO, closure
from models.forecasting.kinds import KINDS, PROTOCOL_MODULE, SERVING_FILE, forecaster_modules

PYFUNC_FILE = Path(__file__).with_name("pyfunc.py")


def signature(default_horizon: int) -> ModelSignature:
    # ds is a timestamp or an integer step, hence AnyType.
    inputs = Schema([ColSpec("string", "unique_id"), ColSpec(AnyType(), "ds"), ColSpec("double", "y")])
    params = ParamSchema([ParamSpec("horizon", "long", default_horizon)])
    return ModelSignature(inputs=inputs, params=params)


def requirements(kind: str) -> list[str]:
    pkgs = ["numpy", "pandas", "mlflow", "jaxtyping"]
    pkgs += {"statistical": ["statsforecast"], "ensemble": ["statsforecast", "torch"]}.get(kind, ["torch"])
    pkgs += ["faiss-cpu"] if kind in ("teacher", "ensemble") else []
    return [f"{p}=={version(p)}" for p in pkgs]


def shipped_files(kind: str) -> list[Path]:
    """The repository files a registered model of ``kind`` needs (all under ``models/``)."""
    files = closure([*forecaster_modules(kind), PROTOCOL_MODULE, "models.forecasting.kinds"])
    outside = [p for p in files if p.relative_to(REPO).parts[0] != "models"]
    if outside:  # the pyfunc could not import them: models/ must stay self-contained
        raise RuntimeError(f"forecaster code imports outside models/: {outside}")
    return files


def code_tree(kind: str, into: Path) -> Path:
    """A copy of ``shipped_files(kind)`` under ``into/models``; returns that folder."""
    for path in shipped_files(kind):
        target = into / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return into / "models"


def log_forecaster(kind: str, model_dir: Path, serving_meta: dict, name: str = "model") -> str:
    """Log ``model_dir`` (a saved forecaster) into the active run; returns the model URI.

    ``serving_meta`` (freq, default_horizon, max_horizon, domain, ...) is written next to
    the weights so a server needs nothing but the artifact folder.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}")
    # the kind travels in the folder, not in model_config: several models logged into one run
    # would otherwise clash on the run param MLflow makes of it
    (Path(model_dir) / SERVING_FILE).write_text(json.dumps({**serving_meta, "kind": kind}, indent=2, default=str))
    with tempfile.TemporaryDirectory(prefix="tsfm-code-") as tmp:
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PYFUNC_FILE),
            artifacts={"model_dir": str(model_dir)},
            code_paths=[str(code_tree(kind, Path(tmp)))],
            signature=signature(int(serving_meta.get("default_horizon") or 1)),
            pip_requirements=requirements(kind),
        )
    return info.model_uri
