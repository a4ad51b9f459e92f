"""Memory adapter (TS-Memory stage 2): a small head that corrects the frozen backbone.

It reads the backbone's embedding and its normalised quantiles and predicts a delta
to those quantiles (the reference's hidden-state "delta" variant). The last layer
starts at zero, so an untrained adapter returns the backbone's forecast; the output
is sorted so quantiles never cross. Cost is one small MLP per series, independent
of the datastore size.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class AdapterConfig:
    d_model: int  # backbone embedding width
    horizon: int  # trained horizon; shorter ones are prefixes
    n_quantiles: int = 9
    hidden: int = 64


class MemoryAdapter(nn.Module):
    def __init__(self, config: AdapterConfig):
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
        embedding: torch.Tensor,  # [batch, d_model]
        base_norm: torch.Tensor,  # [batch, horizon, quantile] backbone, normalised space
    ) -> torch.Tensor:  # [batch, horizon, quantile]
        b, h, q = base_norm.shape
        # asinh keeps a wild backbone quantile from dominating the input features
        x = self.embed_in(embedding) + self.quant_in(torch.asinh(base_norm).reshape(b, h * q))
        return self.out(self.body(x)).reshape(b, h, q)

    def forward_unsorted(self, embedding: torch.Tensor, base_norm: torch.Tensor) -> torch.Tensor:
        """backbone + delta before sorting [batch, horizon, quantile]: what the crossing penalty sees."""
        return base_norm + self.delta(embedding, base_norm)

    def forward(self, embedding: torch.Tensor, base_norm: torch.Tensor) -> torch.Tensor:
        """q_mem_norm [batch, horizon, quantile], sorted along the quantile axis."""
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
        adapter = cls(AdapterConfig(**json.loads((directory / "adapter.json").read_text())))
        adapter.load_state_dict(torch.load(directory / "adapter.pt", map_location=map_location, weights_only=True))
        return adapter.eval()
