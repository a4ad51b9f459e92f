"""One or two points: every neural family answers with the last value and a spread bounded by the
context's own range (the shipped backbone answered [100, 100] with a 0.9 quantile of 4,879)."""

from __future__ import annotations

import numpy as np
import pytest

from models.backbone.io import SHIPPED_DIR, load_backbone
from models.forecasting.backbone import BackboneForecaster
from models.forecasting.tiny import MIN_NEURAL_CONTEXT, naive_quantiles, short_rows

CONTEXTS = [
    np.array([100.0, 100.0]),
    np.array([1.0]),
    np.array([5.0, np.nan, np.nan]),
    np.array([90.0, 110.0]),
    np.array([np.nan]),
    np.array([100.0, 100.0, 100.0]),
    50 + 5 * np.sin(np.arange(60.0)),
]


@pytest.fixture(scope="module")
def forecaster():
    return BackboneForecaster(load_backbone(SHIPPED_DIR), 256)


def test_short_contexts_are_bounded_by_their_range_and_long_ones_untouched(forecaster):
    q = forecaster.predict(CONTEXTS, 6).quantiles
    assert short_rows(CONTEXTS).tolist() == [True, True, True, True, True, False, False]
    for x, answer in zip(CONTEXTS[:5], q[:5]):
        seen = x[np.isfinite(x)]
        if not seen.size:
            assert (answer == 0).all()
            continue
        spread = seen.max() - seen.min()
        assert (answer <= seen.max() + spread + 1e-4).all() and (answer >= seen.min() - spread - 1e-4).all()
        np.testing.assert_allclose(answer[:, 4], seen[-1])  # the median is the last value
    # three equal points already go to the backbone, and it answers near the level
    assert abs(q[5, :, 8] - 100).max() < 5
    # a long series' answer is the backbone's own, whatever else is in the call
    alone = forecaster.predict(CONTEXTS[-1:], 6).quantiles
    np.testing.assert_allclose(q[-1], alone[0], rtol=1e-5)
    assert MIN_NEURAL_CONTEXT == 3


def test_naive_quantiles_are_sorted_and_centred():
    q = naive_quantiles([np.array([90.0, 110.0])], 3)
    assert (np.diff(q, axis=-1) >= 0).all() and q[0, 0, 4] == pytest.approx(110.0)
    assert q[0, 0, 8] - q[0, 0, 4] == pytest.approx(10.0, rel=1e-3)  # half the range above the median
