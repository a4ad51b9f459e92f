"""What ingest accepts, onboarding finishes: small panels as users have them (constant, all zero,
spikes, tiny and huge scales, short, gappy) go through ingest, the split, the memory adapter,
the evaluation and the gate's choice. Each ends in a chosen champion or in the one-line refusal
of a user's mistake (``InputError``: ingest's reasons; onboarding's ``ValueError``, which the
adapt task turns into one); never in any other exception. Constant and all-zero series, values
near 1e300 and a long horizon on short series each crashed after ingest had accepted them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluation.domain import evaluate_result, validation_evidence
from evaluation.gate import choose_candidate
from infra.errors import InputError
from infra.settings import OnboardParams
from models.backbone.network import PatchBackbone
from models.backbone.presets import get_preset
from models.memory.onboarding import onboard
from store.canonical import read_split
from store.ingest import ingest_to_store

KINDS = ("constant", "zero", "spikes", "tiny", "huge", "walk", "seasonal")


@st.composite
def panels(draw) -> tuple[pd.DataFrame, int, int]:
    n_series = draw(st.integers(1, 3))
    length = draw(st.integers(4, 80))
    # integer steps, or dates: monthly, or daily and hourly (a second cycle: MSTL is a candidate)
    freq = draw(st.sampled_from(["MS", None, "D", "h"]))
    rows = []
    for s in range(n_series):
        kind = draw(st.sampled_from(KINDS))
        t = np.arange(length, dtype=float)
        rng = np.random.default_rng(draw(st.integers(0, 1000)))
        y = {
            "constant": np.full(length, 7.0),
            "zero": np.zeros(length),
            "spikes": np.where(rng.random(length) < 0.2, 1000.0, 1.0),
            "tiny": 1e-9 * (2 + np.sin(t)),
            "huge": draw(st.sampled_from([1e20, 1e35, 1e300])) * (2 + np.sin(t)),
            "walk": np.cumsum(rng.normal(size=length)),
            "seasonal": 10 + np.sin(2 * np.pi * t / 12),
        }[kind]
        stamps = (
            pd.date_range("2020-01-01", periods=length, freq=freq).strftime("%Y-%m-%d %H:%M:%S")
            if freq
            else [str(i) for i in range(length)]
        )
        gaps = draw(st.sets(st.integers(0, length - 1), max_size=3))  # missing values as empty cells
        rows += [(f"s{s}", d, "" if i in gaps else repr(float(v))) for i, (d, v) in enumerate(zip(stamps, y))]
    frame = pd.DataFrame(rows, columns=["unique_id", "ds", "y"])
    return frame, draw(st.integers(1, 8)), draw(st.integers(2, 8))


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return PatchBackbone(get_preset("tiny")).eval()


def test_every_accepted_panel_ends_in_a_champion_or_one_line(backbone, tmp_path_factory):
    outcomes: dict[str, int] = {}

    @settings(
        max_examples=10,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(case=panels())
    def run(case) -> None:
        frame, horizon, min_train = case
        folder = tmp_path_factory.mktemp("panel")
        frame.to_csv(folder / "panel.csv", index=False)
        try:
            store = ingest_to_store(str(folder / "panel.csv"), "panel", horizon, min_train, folder / "data")
            split, _ = read_split(store, horizon, None, True, None)
        except InputError:
            outcomes["refused at ingest"] = outcomes.get("refused at ingest", 0) + 1
            return
        params = OnboardParams(
            domain="panel", horizon=horizon, context_length=32, adapter={"epochs": 2}, val_origins=None
        )
        try:
            result = onboard(backbone, split, params)
        except ValueError:  # the adapt task's one-line refusal (tasks.onboard)
            outcomes["refused at onboarding"] = outcomes.get("refused at onboarding", 0) + 1
            return
        result.provenance = {"domain": "panel", "backbone_version": "1"}
        result.save(folder / "result")
        evaluate_result(result, "panel")
        evidence = validation_evidence(result)
        choice = choose_candidate(evidence, 0.01, 0.9)
        assert choice.family and choice.reason
        outcomes["champion"] = outcomes.get("champion", 0) + 1
        if "mstl" in evidence.scores:  # daily or hourly data: MSTL was scored (or its fallback, when short)
            outcomes["with MSTL"] = outcomes.get("with MSTL", 0) + 1

    run()
    print(f"outcomes: {outcomes}")
    assert outcomes.get("champion", 0) >= 3, outcomes  # most generated panels onboard, not just refused
    assert outcomes.get("with MSTL", 0) >= 1, outcomes
