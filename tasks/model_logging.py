"""Log a tsfm forecaster folder as an MLflow pyfunc model (model from code)."""
from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import mlflow
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

import models as models_pkg

PYFUNC_FILE = Path(__file__).with_name("forecaster_pyfunc.py")
MODELS_DIR = Path(models_pkg.__file__).parent
KINDS = ("backbone", "teacher", "adapter", "fused")


def signature(default_horizon: int) -> ModelSignature:
    # ds is a timestamp or an integer step (DESIGN.md), hence AnyType.
    inputs = Schema([ColSpec("string", "unique_id"), ColSpec(AnyType(), "ds"), ColSpec("double", "y")])
    params = ParamSchema([ParamSpec("horizon", "long", default_horizon)])
    return ModelSignature(inputs=inputs, params=params)


def requirements() -> list[str]:
    pkgs = ["torch", "numpy", "pandas", "faiss-cpu", "mlflow"]
    return [f"{p}=={version(p)}" for p in pkgs]


def log_forecaster(kind: str, model_dir: Path, serving_meta: dict, name: str = "model") -> str:
    """Log ``model_dir`` (a saved forecaster) into the active run; returns the model URI.

    ``serving_meta`` (freq, default_horizon, max_horizon, domain, ...) is written
    next to the weights so the server needs nothing but the artifact folder.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    (Path(model_dir) / "serving.json").write_text(json.dumps(serving_meta, indent=2, default=str))
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(PYFUNC_FILE),
        artifacts={"model_dir": str(model_dir)},
        code_paths=[str(MODELS_DIR)],
        model_config={"kind": kind},
        signature=signature(int(serving_meta.get("default_horizon", 1))),
        pip_requirements=requirements(),
    )
    return info.model_uri
