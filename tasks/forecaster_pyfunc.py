"""MLflow pyfunc "model from code" for every registered tsfm forecaster.

MLflow loads this file (not a pickle) together with the `models` package shipped
in the model's code paths. ``model_config["kind"]`` picks what is inside the
artifact folder: ``backbone`` (frozen backbone alone), ``teacher`` (kNN retrieval
at inference), ``adapter`` (memory adapter fully applied) or ``fused``.

Scoring protocol (DESIGN.md): input rows ``unique_id, ds, y`` of each series'
context, ``params={"horizon": H}``; output per series and step ``unique_id, ds,
mean`` and the quantile columns ``"0.1"`` .. ``"0.9"``.
"""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

QUANTILE_COLUMNS = [f"{q / 10:.1f}" for q in range(1, 10)]
ALIASES = {"item_id": "unique_id", "timestamp": "ds", "target": "y"}


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def parse_context(frame: pd.DataFrame) -> tuple[list[str], list[np.ndarray], list[pd.Series]]:
    """Validate the request rows; return ids, value arrays and ds columns per series."""
    frame = frame.rename(columns={k: v for k, v in ALIASES.items() if k in frame.columns})
    missing = [c for c in ("unique_id", "ds", "y") if c not in frame.columns]
    if missing:
        raise _bad_request(f"missing column(s) {missing}; got {list(frame.columns)}")
    if frame.empty:
        raise _bad_request("no context rows given")
    y = pd.to_numeric(frame["y"], errors="coerce")
    bad = frame.index[y.isna() & frame["y"].notna()]
    if len(bad):
        raise _bad_request(f"column 'y' is not numeric in row(s) {list(bad[:5])}")
    if not np.isfinite(y.dropna().to_numpy(dtype=float)).all():
        raise _bad_request("column 'y' holds infinite values")
    frame = frame.assign(y=y, unique_id=frame["unique_id"].astype(str))
    if pd.api.types.is_numeric_dtype(frame["ds"]):
        ds = frame["ds"].astype("int64")
    else:
        ds = pd.to_datetime(frame["ds"], errors="coerce", utc=False)
        if ds.isna().any():
            raise _bad_request("column 'ds' has values that are neither timestamps nor integers")
    frame = frame.assign(ds=ds).sort_values(["unique_id", "ds"], kind="stable")
    if frame.duplicated(["unique_id", "ds"]).any():
        raise _bad_request("duplicate (unique_id, ds) rows in the context")
    ids, values, stamps = [], [], []
    for uid, g in frame.groupby("unique_id", sort=False):
        ids.append(uid)
        values.append(g["y"].to_numpy(np.float32))
        stamps.append(g["ds"])
    return ids, values, stamps


def future_stamps(ds: pd.Series, horizon: int, freq: str | None) -> list:
    """The next ``horizon`` time stamps after a series' context."""
    last = ds.iloc[-1]
    if pd.api.types.is_integer_dtype(ds):
        return list(range(int(last) + 1, int(last) + 1 + horizon))
    step = freq or (pd.infer_freq(ds) if len(ds) >= 3 else None)
    if step is not None:
        return list(pd.date_range(last, periods=horizon + 1, freq=step)[1:])
    delta = ds.iloc[-1] - ds.iloc[-2] if len(ds) >= 2 else pd.Timedelta(1, "D")
    return [last + delta * (i + 1) for i in range(horizon)]


def forecast_frame(ids, stamps, quantiles: np.ndarray, freq: str | None) -> pd.DataFrame:
    """quantiles [N, H, 9] -> long answer frame."""
    n, h, _ = quantiles.shape
    rows = []
    for i in range(n):
        for step, ts in enumerate(future_stamps(stamps[i], h, freq)):
            rows.append((ids[i], ts))
    out = pd.DataFrame(rows, columns=["unique_id", "ds"])
    flat = quantiles.reshape(n * h, -1)
    out["mean"] = flat[:, 4]  # median knot: the point forecast of a quantile model
    for j, col in enumerate(QUANTILE_COLUMNS):
        out[col] = flat[:, j]
    if pd.api.types.is_datetime64_any_dtype(out["ds"]):
        out["ds"] = out["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return out


class TsfmForecaster(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        # imported here: MLflow puts the model's code paths on sys.path first
        from models import fused
        from models.backbone_forecaster import BackboneForecaster

        cfg = context.model_config or {}
        self.kind = cfg.get("kind", "fused")
        directory = Path(context.artifacts["model_dir"])
        meta_path = directory / "serving.json"
        self.meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if self.kind == "backbone":
            self.forecaster = BackboneForecaster.load(directory)
        elif self.kind == "teacher":
            self.forecaster = fused.TeacherForecaster.load(directory)
        else:
            self.forecaster = fused.FusedForecaster.load(directory)
        self.max_horizon = int(self.meta.get("max_horizon") or 0) or None  # None: any horizon

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = params or {}
        horizon = params.get("horizon", self.meta.get("default_horizon"))
        try:
            horizon = int(horizon)
        except (TypeError, ValueError):
            raise _bad_request(f"params.horizon must be an integer, got {horizon!r}") from None
        if horizon < 1:
            raise _bad_request("params.horizon must be >= 1")
        if self.max_horizon is not None and horizon > self.max_horizon:
            raise _bad_request(
                f"params.horizon={horizon} exceeds this model's trained horizon {self.max_horizon}"
            )
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        ids, values, stamps = parse_context(model_input)
        quantiles = self.forecaster.predict(values, horizon)  # [N, H, 9]
        return forecast_frame(ids, stamps, np.asarray(quantiles), self.meta.get("freq"))


mlflow.models.set_model(TsfmForecaster())
