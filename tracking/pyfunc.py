"""MLflow pyfunc "model from code" for every registered tsfm forecaster.

MLflow loads this file (not a pickle) together with the ``models`` package shipped in the
model's code paths. ``serving.json`` in the artifact folder says what the folder holds
(``kind``, ``models.forecasting.kinds``: backbone, teacher, adapter, fused or statistical)
and how to serve it (frequency, horizons, domain).

Scoring protocol (``models.forecasting.protocol``): input rows ``unique_id, ds, y`` of each
series' context, ``params={"horizon": H}``; output per series and step ``unique_id, ds,
mean`` and the quantile columns ``"0.1"`` .. ``"0.9"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

# `models` is this pyfunc's code path: MLflow puts it on sys.path before it runs this file.
from models.forecasting.kinds import SERVING_FILE, load_forecaster
from models.forecasting.protocol import (
    floor_at_zero,
    forecast_frame,
    from_model_scale,
    on_grid_with_futures,
    parse_context,
    parse_horizon,
    to_model_scale,
)


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class TsfmForecaster(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        directory = Path(context.artifacts["model_dir"])
        meta_path = directory / SERVING_FILE
        self.meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        self.kind = self.meta.get("kind", "fused")
        self.forecaster = load_forecaster(self.kind, directory)
        self.max_horizon = int(self.meta.get("max_horizon") or 0) or None  # None: any horizon

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = params or {}
        try:
            # the protocol's checks are shared with tsfm's own server
            horizon = parse_horizon(params.get("horizon", self.meta.get("default_horizon")), self.max_horizon)
            if not isinstance(model_input, pd.DataFrame):
                model_input = pd.DataFrame(model_input)
            ids, values, stamps = parse_context(model_input)
            # a skipped hour or day filled with nulls; irregular stamps -> ValueError
            values, futures = on_grid_with_futures(ids, values, stamps, horizon, self.meta.get("freq"))
            scaled, factors = to_model_scale(values)  # float32 models, any float64 magnitude
            forecast = self.forecaster.predict(scaled, horizon, ids=ids)  # ValueError: horizon too long
            quantiles = from_model_scale(forecast.quantiles, factors, ids)  # ValueError: beyond float64
            quantiles = floor_at_zero(quantiles, values)  # no negative forecast for a series never below zero
        except ValueError as e:
            raise _bad_request(str(e)) from None
        return forecast_frame(ids, futures, quantiles)


mlflow.models.set_model(TsfmForecaster())
