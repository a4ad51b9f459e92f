"""Cross-domain comparison tables built from onboarding result folders (evaluation/compare.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from evaluation.compare import comparison_table, forgetting_table, pooled_table, relative_to_backbone
from models.backbone.io import save_backbone
from models.backbone.network import PatchBackbone
from models.backbone.presets import get_preset
from models.memory.result import OnboardingResult, PartForecasts
from reports.tables import markdown_table as markdown
from store.canonical import read_split
from store.ingest import ingest_to_store


def _result(tmp_path, domain: str, scrps: dict[str, float], store: str, h: int) -> str:
    """A result folder as onboarding and evaluation leave it (no forecasters but the backbones below)."""
    split, _ = read_split(store, h)
    q = np.zeros((len(split), h, 9), np.float32)
    result = OnboardingResult(
        split=split,
        alpha=0.5,
        alpha_table=[],
        history=[],
        val=PartForecasts(q, q, q),
        test=PartForecasts(q, q, q),
        n_windows=1,
        provenance={"domain": domain, "store": store, "backbone_version": "1"},
    )
    out = Path(result.save(tmp_path / domain))
    metrics = pd.DataFrame(
        {
            "MASE": [2 * v for v in scrps.values()],
            "sCRPS": list(scrps.values()),
            "sMAPE": [100 * v for v in scrps.values()],
            "ms_per_series": 1.0,
        },
        index=pd.Index(list(scrps), name="model"),
    )
    metrics.to_csv(result.metrics_file("test"))
    rows = [
        {"unique_id": u, "model": m, "MASE": 2 * v, "sCRPS": v + i, "sMAPE": 1.0}
        for m, v in scrps.items()
        for i, u in enumerate(split.ids)
    ]
    pd.DataFrame(rows).to_csv(result.per_series_file("test"), index=False)
    return str(out)


@pytest.fixture
def results(tmp_path):
    stores = {
        d: str(ingest_to_store(f"synthetic:kernelsynth?n_series=4&length=80&seed={i}", d, 6, 8, tmp_path))
        for i, d in enumerate(("a", "b"))
    }
    dirs = [
        _result(tmp_path, "a", {"fused": 0.08, "backbone": 0.10, "auto_ets": 0.05}, stores["a"], 6),
        _result(tmp_path, "b", {"fused": 0.30, "backbone": 0.20, "auto_ets": 0.10}, stores["b"], 6),
    ]
    return dirs


def test_tables_keep_model_order_and_average_ratios_over_domains(results):
    table = comparison_table(results)
    assert list(table.loc["a"].index) == ["auto_ets", "backbone", "fused"]
    rel = relative_to_backbone(table)
    np.testing.assert_allclose(rel.loc["a", "fused"], 0.8)
    np.testing.assert_allclose(rel.loc["b", "fused"], 1.5)
    np.testing.assert_allclose(rel.loc["mean over domains", "fused"], 1.15)
    pooled = pooled_table(results)
    # per-series means over both domains: fused (0.08 + i) and (0.30 + i), i = 0..3
    np.testing.assert_allclose(pooled.loc["fused", "sCRPS"], (0.08 + 0.30) / 2 + 1.5)
    assert pooled.loc["fused", "series"] == 8
    md = markdown(rel)
    assert md.splitlines()[0] == "| domain | auto_ets | backbone | fused |"
    assert "| mean over domains | 0.500 | 1.000 | 1.150 |" in md


def test_forgetting_compares_the_finetuned_copy_with_the_untouched_backbone_on_other_domains(results, tmp_path):
    torch.manual_seed(0)
    backbone = PatchBackbone(get_preset("tiny")).eval()
    for d in results:
        save_backbone(backbone, f"{d}/fused/backbone")
    # a: "fine-tuned" copy identical to the backbone -> ratio 1; b: perturbed -> a different score
    save_backbone(backbone, f"{results[0]}/finetuned/backbone")
    tuned = PatchBackbone(get_preset("tiny")).eval()
    tuned.load_state_dict(backbone.state_dict())
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_backbone(tuned, f"{results[1]}/finetuned/backbone")
    table = forgetting_table(results, context_length=32).set_index("finetuned_on")
    assert list(table["evaluated_on"]) == ["b", "a"]  # each on the OTHER domain only
    np.testing.assert_allclose(table.loc["a", ["sCRPS_ratio", "MASE_ratio"]].astype(float), 1.0)
    assert table.loc["b", "sCRPS_ratio"] != pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(table[["backbone_sCRPS", "finetuned_sCRPS"]].to_numpy(float)).all()
