"""Cross-domain comparison tables built from onboarding result folders (tasks/compare.py)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from models.backbone import PatchBackbone, save_backbone
from models.presets import get_preset
from tasks.compare import comparison_table, forgetting_table, pooled_table, relative_to_backbone
from tasks.ingest import ingest_to_store
from tasks.metrics import markdown_table as markdown


def _result(tmp_path, domain: str, scrps: dict[str, float], store: str, series: list[str], h: int) -> str:
    out = tmp_path / domain
    out.mkdir()
    metrics = pd.DataFrame({"MASE": [2 * v for v in scrps.values()], "sCRPS": list(scrps.values()),
                            "sMAPE": [100 * v for v in scrps.values()], "ms_per_series": 1.0},
                           index=pd.Index(list(scrps), name="model"))
    metrics.to_csv(out / "test_metrics.csv")
    rows = [{"unique_id": u, "model": m, "MASE": 2 * v, "sCRPS": v + i, "sMAPE": 1.0}
            for m, v in scrps.items() for i, u in enumerate(series)]
    pd.DataFrame(rows).to_csv(out / "test_per_series.csv", index=False)
    summary = {"domain": domain, "store": store, "series": series, "backbone_version": "1", "horizon": h}
    (out / "summary.json").write_text(json.dumps(summary))
    np.savez(out / "forecasts.npz", seasons=np.ones(len(series), np.int64))
    return str(out)


@pytest.fixture
def results(tmp_path):
    stores = {d: str(ingest_to_store(f"synthetic:kernelsynth?n_series=4&length=80&seed={i}", d, 6, 8, tmp_path))
              for i, d in enumerate(("a", "b"))}
    ids = [f"ks{i:04d}" for i in range(4)]
    dirs = [_result(tmp_path, "a", {"fused": 0.08, "backbone": 0.10, "auto_ets": 0.05}, stores["a"], ids, 6),
            _result(tmp_path, "b", {"fused": 0.30, "backbone": 0.20, "auto_ets": 0.10}, stores["b"], ids, 6)]
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
