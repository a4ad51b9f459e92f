"""The memory adapter's budget (at most 5% of the backbone) and its constant cost per forecast."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.backbone.network import PatchBackbone
from models.backbone.presets import PRESETS, count_parameters, get_preset
from models.forecasting.batch import batch_forecast
from models.forecasting.fused import FusedForecaster
from models.memory.adapter import (
    ADAPTER_MAX_FRACTION,
    AdapterShape,
    MemoryAdapter,
    adapter_flops,
    adapter_parameters,
    fit_hidden,
)

HORIZONS = (6, 18, 48)
DEFAULT_HIDDEN = 64


@pytest.fixture(scope="module")
def backbone_params() -> dict[str, int]:
    """Every preset's parameter count, built on the meta device (no memory), as `python -m models.backbone.presets`."""
    return {name: count_parameters(config) for name, config in PRESETS.items()}


def _meta_adapter(d_model: int, horizon: int, hidden: int, n_quantiles: int = 9) -> MemoryAdapter:
    with torch.device("meta"):
        return MemoryAdapter(AdapterShape(d_model, horizon, n_quantiles, hidden))


@pytest.mark.parametrize(
    ("d_model", "horizon", "n_quantiles", "hidden"),
    [(64, 4, 9, 16), (256, 18, 9, 64), (512, 48, 9, 7), (2048, 1, 3, 1)],
)
def test_adapter_parameters_matches_the_module(d_model, horizon, n_quantiles, hidden):
    adapter = _meta_adapter(d_model, horizon, hidden, n_quantiles)
    assert adapter_parameters(d_model, horizon, n_quantiles, hidden) == adapter.n_parameters()


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("horizon", HORIZONS)
def test_default_adapter_fits_every_preset(preset, horizon, backbone_params):
    d = PRESETS[preset].d_model
    n_backbone = backbone_params[preset]
    hidden = fit_hidden(d, horizon, 9, n_backbone, DEFAULT_HIDDEN)
    assert 4 <= hidden <= DEFAULT_HIDDEN
    n_adapter = _meta_adapter(d, horizon, hidden).n_parameters()
    assert n_adapter <= ADAPTER_MAX_FRACTION * n_backbone
    # the widest that fits: 64 whenever 64 fits, else one unit wider would break the budget
    if adapter_parameters(d, horizon, 9, DEFAULT_HIDDEN) <= ADAPTER_MAX_FRACTION * n_backbone:
        assert hidden == DEFAULT_HIDDEN
    else:
        assert adapter_parameters(d, horizon, 9, hidden + 1) > ADAPTER_MAX_FRACTION * n_backbone
    # only the test-sized preset needs shrinking; every Toto 2.0 size takes the default adapter
    assert (hidden < DEFAULT_HIDDEN) == (preset == "tiny")


def test_fit_hidden_shrinks_to_the_budget_and_refuses_what_cannot_fit():
    budget = 0.05 * 142_536  # the tiny preset
    hidden = fit_hidden(64, 48, 9, 142_536, 64)
    assert hidden == 7  # 7,126 parameters = the budget to the unit, 8 would be 8,072
    assert adapter_parameters(64, 48, 9, 7) <= budget < adapter_parameters(64, 48, 9, 8)
    assert fit_hidden(64, 6, 9, 142_536, 16) == 16  # already inside: untouched
    assert fit_hidden(64, 6, 9, 142_536, 2) == 2  # below the minimum width but fits: kept
    assert fit_hidden(64, 6, 9, 10**9, 64, max_fraction=1.0) == 64
    with pytest.raises(ValueError, match=r"no memory adapter fits.*hidden=4.*5%"):
        fit_hidden(64, 48, 9, 20_000, 64)
    with pytest.raises(ValueError, match="no memory adapter fits"):
        fit_hidden(256, 18, 9, 3_851_424, 64, max_fraction=0.0005)
    with pytest.raises(ValueError):
        fit_hidden(64, 6, 9, 142_536, 0)


def _matmul_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize(("d_model", "horizon", "hidden"), [(64, 4, 16), (256, 18, 64)])
def test_adapter_cost_is_a_constant_per_series(d_model, horizon, hidden):
    """Matmul FLOPs of the adapter: batch x a constant fixed by d_model, horizon and width."""
    adapter = MemoryAdapter(AdapterShape(d_model, horizon, hidden=hidden)).eval()
    per_series = adapter_flops(d_model, horizon, 9, hidden)
    for batch in (1, 7, 256):
        emb, base = torch.randn(batch, d_model), torch.randn(batch, horizon, 9)
        with torch.inference_mode():
            assert _matmul_flops(lambda: adapter(emb, base)) == batch * per_series


def test_fused_forecast_costs_the_backbone_plus_the_adapter_and_holds_no_datastore():
    torch.manual_seed(0)
    backbone = PatchBackbone(get_preset("tiny")).eval()
    adapter = MemoryAdapter(AdapterShape(backbone.config.d_model, 4, hidden=8))
    fused = FusedForecaster(backbone, adapter, alpha=0.5, context_length=32, horizon=4, batch_size=4)
    rng = np.random.default_rng(0)
    per_series = adapter_flops(backbone.config.d_model, 4, 9, 8)
    for n in (1, 3, 9):  # 9 = three chunks of batch_size 4
        ctx = [rng.normal(size=40).astype(np.float32) for _ in range(n)]
        extra = _matmul_flops(lambda: fused.predict(ctx, 4)) - _matmul_flops(
            lambda: batch_forecast(backbone, ctx, 4, 32, batch_size=4)
        )
        assert extra == n * per_series
    # nothing searchable is held: the state is the two modules and a few numbers
    for value in vars(fused).values():
        assert isinstance(value, (torch.nn.Module, int, float, str)), type(value)
