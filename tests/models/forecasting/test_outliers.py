"""One absurd point (a unit slip) in a flat series: the backbone reads it as missing, so its forecast is
the series' own; a level shift, the last point and lumpy demand are read as they are."""

from __future__ import annotations

import numpy as np
import torch

from models.backbone.io import SHIPPED_DIR, load_backbone
from models.forecasting.backbone import BackboneForecaster
from models.forecasting.inputs import left_pad
from models.forecasting.outliers import isolated_extremes

FLAT = 100 + np.arange(80) % 7.0


def test_an_isolated_absurd_point_is_missing_and_real_changes_are_kept():
    spike = FLAT.copy()
    spike[10] = 100_000.0
    shift = np.r_[np.ones(60), np.full(20, 1_000.0)]  # 1,000x, but twenty points: a new level
    last = FLAT.copy()
    last[-1] = 100_000.0  # nothing after it says it was a slip
    lumpy = np.where(np.arange(80) % 9 == 0, 12.0, 0.0)  # mostly zeros
    prices = 40 + np.arange(80) % 5.0
    prices[30] = 3_000.0  # a 75x price spike is data
    padded = left_pad([spike, shift, last, lumpy, prices], 96)
    assert np.isnan(padded).sum(axis=1).tolist() == [16 + 1, 16, 16, 16, 16]
    assert np.isnan(padded[0, 16 + 10]) and isolated_extremes(np.array([[np.nan, np.nan]])).sum() == 0


def test_the_backbone_forecasts_a_flat_series_with_a_slip_as_without_it():
    torch.manual_seed(0)
    forecaster = BackboneForecaster(load_backbone(SHIPPED_DIR), 256)
    spike = FLAT.copy()
    spike[10] = 100_000.0
    clean, slipped = forecaster.predict([FLAT, spike], 7).quantiles
    np.testing.assert_allclose(slipped, clean, rtol=0.01)  # one point missing: nearly the same answer
    assert 90 < slipped[:, 4].min() and slipped[:, 4].max() < 115
