import numpy as np
import torch

from models.memory.adapter import AdapterShape, MemoryAdapter
from models.memory.config import AdapterConfig
from models.memory.distill import (
    DistillSet,
    beta_from_confidence,
    distill_loss,
    median_gate,
    train_adapter,
    val_pinball,
)
from models.metrics import QUANTILES, pinball_loss, pinball_per_sample

Q = len(QUANTILES)


def test_beta_range():
    beta = beta_from_confidence(torch.tensor([0.0, 0.5, 1.0, 1.7]), AdapterConfig())
    np.testing.assert_allclose(beta.numpy(), [0.2, 0.5, 0.8, 0.8], rtol=1e-6)


def test_pinball_matches_the_backbone_loss_and_ignores_missing_targets():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 5, Q, generator=g).sort(-1).values
    y = torch.randn(4, 5, generator=g)
    np.testing.assert_allclose(float(pinball_per_sample(q, y).mean()), float(pinball_loss(q, y)), rtol=1e-6)
    y_nan = y.clone()
    y_nan[0, 3:] = float("nan")
    assert torch.isclose(pinball_per_sample(q, y_nan)[0], pinball_per_sample(q[:1, :3], y[:1, :3])[0])


def test_median_gate_follows_which_median_is_closer():
    y = torch.zeros(2, 3)
    base = torch.tensor([[1.0, 1.0, 1.0], [0.1, 0.1, 0.1]])
    teacher = torch.tensor([[0.2, 0.2, 0.2], [0.5, 0.5, 0.5]])
    assert median_gate(y, base, teacher).tolist() == [1.0, 0.0]


def test_median_alignment_only_where_the_teacher_beats_the_backbone():
    y = torch.zeros(1, 2)
    base = torch.linspace(-1, 1, Q).expand(1, 2, Q).clone() + 1.0  # median 1.0, y = 0
    w = AdapterConfig(anchor=0.0, crossing=0.0)
    for teacher_median, gated in ((0.5, 1.0), (1.5, 0.0)):
        teacher = base.clone()
        teacher[..., 4] = teacher_median  # tails identical: only the median can contribute
        _, parts = distill_loss(base, _batch(base, y, teacher, 1.0), w)
        assert parts["median_gate"] == gated
        assert parts["align"] == (0.125 if gated else 0.0)  # smooth-L1 of 0.5


def test_anchor_weight_shrinks_with_confidence_and_crossing_is_penalised():
    y = torch.zeros(1, 2)
    base = torch.linspace(-1, 1, Q).expand(1, 2, Q).clone() + 1.0
    teacher = base - 0.5
    q = base + 0.3  # median moved away from the backbone's
    w = AdapterConfig(crossing=0.0)
    low, p_low = distill_loss(q, _batch(base, y, teacher, 0.0), w)
    high, p_high = distill_loss(q, _batch(base, y, teacher, 1.0), w)
    assert p_low["anchor"] > 0 and p_high["anchor"] == 0.0
    crossed = q.flip(-1)
    _, parts = distill_loss(crossed, _batch(base, y, teacher, 0.5), AdapterConfig())
    assert parts["crossing"] > 0 and distill_loss(q, _batch(base, y, teacher, 0.5), AdapterConfig())[1]["crossing"] == 0


def _batch(base, y, teacher, confidence: float) -> DistillSet:
    return DistillSet(
        embedding=torch.zeros(len(y), 1), base=base, y=y, teacher=teacher, confidence=torch.full((len(y),), confidence)
    )


def _data(n, d, h, seed) -> DistillSet:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g)
    shift = emb[:, :1]  # the truth depends on the embedding: something to learn
    base = torch.linspace(-1, 1, Q).expand(n, h, Q).clone()
    y = shift.expand(n, h) + 0.1 * torch.randn(n, h, generator=g)
    teacher = base + shift[:, :, None]
    return DistillSet(embedding=emb, base=base, y=y, teacher=teacher, confidence=torch.full((n,), 0.6))


def test_train_adapter_improves_validation_restores_best_and_is_deterministic():
    d, h = 8, 3
    train, val = _data(512, d, h, 0), _data(128, d, h, 1)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        adapter = MemoryAdapter(AdapterShape(d_model=d, horizon=h, hidden=16))
        hist = train_adapter(adapter, train, val, AdapterConfig(epochs=15, batch_size=64, lr=3e-3, patience=3), seed=0)
        runs.append((adapter, hist))
    (a1, h1), (a2, h2) = runs
    assert h1 == h2
    for p1, p2 in zip(a1.parameters(), a2.parameters()):
        assert torch.equal(p1, p2)
    best = min(h["val_pinball"] for h in h1)
    assert best < 0.7 * h1[0]["val_pinball"]  # epoch 0 is the untrained adapter (= backbone)
    assert [h["best"] for h in h1].count(True) == 1
    assert np.isclose(val_pinball(a1, val, 64), best)  # best weights restored


def test_training_that_cannot_help_keeps_the_backbone():
    d, h = 4, 2
    train = _data(64, d, h, 0)
    val = _data(64, d, h, 1)
    val = val._replace(y=torch.zeros_like(val.y))  # the backbone's median (0) is already exact on val
    train = train._replace(y=train.y + 5.0)  # and training pulls away from it
    torch.manual_seed(0)
    adapter = MemoryAdapter(AdapterShape(d_model=d, horizon=h, hidden=8))
    hist = train_adapter(adapter, train, val, AdapterConfig(epochs=5, batch_size=32, lr=1e-2, patience=2), seed=0)
    assert hist[0]["best"]
    out = adapter(val.embedding, val.base)
    assert torch.equal(out, val.base)
