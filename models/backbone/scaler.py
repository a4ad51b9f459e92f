"""Causal patch-wise std scaler followed by asinh (Toto 2.0's input normalisation).

Each patch is normalised with the mean/std of all observed points up to and including
its last step, so no patch ever sees statistics from its future. Missing points
(observed=False) leave the statistics unchanged, so padding and masked future patches
are invisible to it: a masked future patch inherits the statistics of the last
context step.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def causal_patch_stats(
    values: Float[Tensor, "batch variate time"],
    observed: Bool[Tensor, "batch variate time"],
    patch_size: int,
    min_scale: float,
    window: int = 0,
) -> tuple[Float[Tensor, "batch variate patch"], Float[Tensor, "batch variate patch"]]:
    """-> loc, scale (float64) per patch; ``time`` a multiple of patch_size.

    ``window`` > 0: the statistics of the last ``window`` patches only (a trending series' last
    patch stays near its loc); a patch with no observed point keeps the statistics of the last
    patch that had one, so masked future patches always carry the context's last statistics."""
    B, V, T = values.shape
    if T % patch_size:
        raise ValueError(f"time length {T} is not a multiple of patch_size {patch_size}")
    w = observed.to(torch.float64)  # [B, V, T]
    x = torch.where(observed, values.to(torch.float64), 0.0)  # [B, V, T]
    # shift by the first observed value: cumulative sums of squares then do not cancel
    # catastrophically for series with a large level (the variance is shift-invariant)
    first = observed.to(torch.int8).argmax(dim=-1, keepdim=True)  # [B, V, 1]
    ref = torch.gather(x, -1, first)  # [B, V, 1] (0 when nothing is observed: unused then)
    xs = (x - ref) * w
    # running sums read at the last step of each patch: [B, V, P]
    ends = slice(patch_size - 1, None, patch_size)
    n = w.cumsum(-1)[..., ends]
    s1 = xs.cumsum(-1)[..., ends]
    s2 = (xs * xs).cumsum(-1)[..., ends]
    if window > 0:
        n, s1, s2 = (_trailing(c, window) for c in (n, s1, s2))
        # patches without an observation inherit the last observed patch's statistics
        seen = w.view(B, V, -1, patch_size).sum(-1) > 0  # [B, V, P]
        steps = torch.arange(seen.shape[-1], device=seen.device).expand_as(seen)
        last = torch.where(seen, steps, 0).cummax(-1).values
        n, s1, s2 = (torch.gather(c, -1, last) for c in (n, s1, s2))
    n_safe = n.clamp_min(1.0)
    mean_shifted = s1 / n_safe
    var = (s2 / n_safe - mean_shifted**2).clamp_min(0.0)
    loc = torch.where(n > 0, mean_shifted + ref, 0.0)
    scale = var.sqrt().clamp_min(min_scale)
    return loc, scale


def _trailing(c: Float[Tensor, "batch variate patch"], window: int) -> Float[Tensor, "batch variate patch"]:
    """Running sums -> sums over the last ``window`` patches."""
    before = torch.zeros_like(c)
    before[..., window:] = c[..., :-window]
    return c - before


def normalise(
    values: Float[Tensor, "batch variate time"],
    loc: Float[Tensor, "batch variate patch"],
    scale: Float[Tensor, "batch variate patch"],
    patch_size: int,
) -> Float[Tensor, "batch variate time"]:
    """asinh((x - loc) / scale) with per-patch statistics: float32, computed in float64."""
    loc_t = loc.to(torch.float64).repeat_interleave(patch_size, dim=-1)  # [B, V, T]
    scale_t = scale.to(torch.float64).repeat_interleave(patch_size, dim=-1)
    return torch.asinh((values.to(torch.float64) - loc_t) / scale_t).to(torch.float32)


def causal_scale(
    values: Float[Tensor, "batch variate time"],
    observed: Bool[Tensor, "batch variate time"],
    patch_size: int,
    min_scale: float,
    window: int = 0,
) -> tuple[
    Float[Tensor, "batch variate time"], Float[Tensor, "batch variate patch"], Float[Tensor, "batch variate patch"]
]:
    """-> (normalised values, 0 where missing; loc; scale), all float32."""
    # float64 statistics must not be downcast by an enclosing autocast region
    with torch.autocast(device_type=values.device.type, enabled=False):
        loc, scale = causal_patch_stats(values, observed, patch_size, min_scale, window)
        norm = normalise(torch.where(observed, values, 0.0), loc, scale, patch_size)
        norm = torch.where(observed, norm, 0.0)
    return norm, loc.to(torch.float32), scale.to(torch.float32)
