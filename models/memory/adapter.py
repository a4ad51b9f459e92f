"""Memory adapter (TS-Memory stage 2): a small head that corrects the frozen backbone.

It reads the backbone's embedding and its normalised quantiles and predicts a delta
to those quantiles (the reference's hidden-state "delta" variant). The last layer
starts at zero, so an untrained adapter returns the backbone's forecast; the output
is sorted so quantiles never cross. Cost is one small MLP per series, independent
of the datastore size.

Budget: an adapter may hold at most ``ADAPTER_MAX_FRACTION`` (5%) of its backbone's
parameters; ``fit_hidden`` picks the widest hidden layer (up to the one asked for)
that stays inside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

ADAPTER_MAX_FRACTION = 0.05  # adapter parameters / backbone parameters, at most
MIN_HIDDEN = 4  # narrowest hidden layer fit_hidden will shrink to


def adapter_parameters(d_model: int, horizon: int, n_quantiles: int = 9, hidden: int = 64) -> int:
    """Parameter count of a ``MemoryAdapter`` with this config, without building it."""
    hq = horizon * n_quantiles
    return (
        2 * d_model  # LayerNorm
        + (d_model + 1) * hidden  # embed_in linear
        + (hq + 1) * hidden  # quant_in
        + (hidden + 1) * hidden  # body
        + (hidden + 1) * hq  # out
    )


def adapter_flops(d_model: int, horizon: int, n_quantiles: int = 9, hidden: int = 64) -> int:
    """Matmul FLOPs of one adapter forward per series (2 per multiply-add): the adapter's
    whole extra cost at inference grows with this and the batch, nothing else."""
    hq = horizon * n_quantiles
    return 2 * hidden * (d_model + hq + hidden + hq)


def fit_hidden(
    d_model: int,
    horizon: int,
    n_quantiles: int,
    backbone_params: int,
    requested_hidden: int,
    max_fraction: float = ADAPTER_MAX_FRACTION,
    min_hidden: int = MIN_HIDDEN,
) -> int:
    """The largest hidden width <= ``requested_hidden`` whose adapter has at most
    ``max_fraction * backbone_params`` parameters.

    Raises ValueError when even ``min(min_hidden, requested_hidden)`` does not fit
    (the horizon * quantile output layer alone can outgrow a tiny backbone's budget).
    """
    if requested_hidden < 1 or min_hidden < 1:
        raise ValueError(f"hidden widths must be >= 1, got requested {requested_hidden}, minimum {min_hidden}")
    if backbone_params < 1 or not 0 < max_fraction:
        raise ValueError(f"need backbone_params >= 1 and max_fraction > 0, got {backbone_params}, {max_fraction}")
    budget = max_fraction * backbone_params
    lowest = min(min_hidden, requested_hidden)
    for hidden in range(requested_hidden, lowest - 1, -1):  # parameters grow with the width
        if adapter_parameters(d_model, horizon, n_quantiles, hidden) <= budget:
            return hidden
    need = adapter_parameters(d_model, horizon, n_quantiles, lowest)
    raise ValueError(
        f"no memory adapter fits the budget: at hidden={lowest} (d_model={d_model}, horizon={horizon}, "
        f"{n_quantiles} quantiles) it has {need:,} parameters, more than {max_fraction:.0%} of the "
        f"backbone's {backbone_params:,} ({int(budget):,}); use a shorter horizon or a larger backbone"
    )


@dataclass(frozen=True)
class AdapterShape:
    d_model: int  # backbone embedding width
    horizon: int  # trained horizon; shorter ones are prefixes
    n_quantiles: int = 9
    hidden: int = 64


class MemoryAdapter(nn.Module):
    def __init__(self, config: AdapterShape):
        super().__init__()
        self.config = config
        h, q = config.horizon, config.n_quantiles
        self.embed_in = nn.Sequential(nn.LayerNorm(config.d_model), nn.Linear(config.d_model, config.hidden))
        self.quant_in = nn.Linear(h * q, config.hidden)
        self.body = nn.Sequential(nn.GELU(), nn.Linear(config.hidden, config.hidden), nn.GELU())
        self.out = nn.Linear(config.hidden, h * q)
        nn.init.zeros_(self.out.weight)  # start exactly at the backbone
        nn.init.zeros_(self.out.bias)

    def delta(
        self,
        embedding: Float[Tensor, "batch d_model"],
        base_norm: Float[Tensor, "batch horizon quantile"],  # the backbone's, normalised space
    ) -> Float[Tensor, "batch horizon quantile"]:
        b, h, q = base_norm.shape
        # asinh keeps a wild backbone quantile from dominating the input features
        x = self.embed_in(embedding) + self.quant_in(torch.asinh(base_norm).reshape(b, h * q))
        return self.out(self.body(x)).reshape(b, h, q)

    def forward_unsorted(
        self, embedding: Float[Tensor, "batch d_model"], base_norm: Float[Tensor, "batch horizon quantile"]
    ) -> Float[Tensor, "batch horizon quantile"]:
        """backbone + delta before sorting: what the crossing penalty sees."""
        return base_norm + self.delta(embedding, base_norm)

    def forward(
        self, embedding: Float[Tensor, "batch d_model"], base_norm: Float[Tensor, "batch horizon quantile"]
    ) -> Float[Tensor, "batch horizon quantile"]:
        """The adapter's quantiles (normalised space), sorted along the quantile axis."""
        return torch.sort(self.forward_unsorted(embedding, base_norm), dim=-1).values

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "adapter.json").write_text(json.dumps(asdict(self.config), indent=2))
        torch.save(self.state_dict(), directory / "adapter.pt")
        return directory

    @classmethod
    def load(cls, directory: str | Path, map_location: str = "cpu") -> MemoryAdapter:
        directory = Path(directory)
        adapter = cls(AdapterShape(**json.loads((directory / "adapter.json").read_text())))
        adapter.load_state_dict(torch.load(directory / "adapter.pt", map_location=map_location, weights_only=True))
        return adapter.eval()


@torch.inference_mode()
def adapter_forecast(
    adapter: MemoryAdapter,
    embedding: Float[np.ndarray, "n d_model"],
    base_norm: Float[np.ndarray, "n horizon quantile"],
    batch_size: int = 256,
) -> Float[np.ndarray, "n horizon quantile"]:
    """The adapter's quantiles (normalised space) for arrays, in batches."""
    adapter.eval()
    device = next(adapter.parameters()).device
    out = []
    for s in range(0, len(embedding), batch_size):
        e = torch.as_tensor(np.asarray(embedding[s : s + batch_size], dtype=np.float32), device=device)
        b = torch.as_tensor(np.asarray(base_norm[s : s + batch_size], dtype=np.float32), device=device)
        out.append(adapter(e, b).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *base_norm.shape[1:]), np.float32)
