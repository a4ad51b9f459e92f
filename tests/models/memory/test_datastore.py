import numpy as np
import pytest

from models.memory import datastore as ds_mod
from models.memory.config import TeacherConfig
from models.memory.datastore import BackboneEmbedder, array_chunks, build_datastore
from models.memory.teacher import KnnTeacher, window_stats

C, H = 24, 6


def _windows(n=900, seed=0):
    """Random-walk windows of many magnitudes; some contexts left-padded, some futures right-padded."""
    rng = np.random.default_rng(seed)
    ctx = rng.normal(size=(n, C)).cumsum(1) * rng.uniform(0.5, 20, (n, 1)) + rng.uniform(-100, 900, (n, 1))
    fut = ctx[:, -1:] + rng.normal(size=(n, H)).cumsum(1)
    ctx, fut = ctx.astype(np.float32), fut.astype(np.float32)
    ctx[::5, :7] = np.nan
    fut[::11, 4:] = np.nan
    return ctx, fut


def _embed(ctx):
    """A deterministic row-wise 'backbone': fixed projection of the normalised context."""
    level, scale = window_stats(ctx, 16)
    z = np.nan_to_num((ctx - level[:, None]) / scale[:, None])
    proj = np.random.default_rng(42).normal(size=(ctx.shape[1], 16)).astype(np.float32)
    return np.tanh(z @ proj).astype(np.float32)


def _uneven_chunks(ctx, fut):
    """Chunks of varying size, one larger than chunk_size, one empty."""
    bounds = [0, 50, 50, 400, 403, 700, len(ctx)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield ctx[a:b], fut[a:b]


def _assert_same_queries(a: KnnTeacher, b: KnnTeacher, ctx):
    qk = _embed(ctx[:200])
    ex = np.arange(200)
    x, y = a.query(qk, ctx[:200], exclude=ex), b.query(qk, ctx[:200], exclude=ex)
    for name in ("neighbors", "weights", "quantiles", "norm_quantiles", "confidence"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


@pytest.mark.parametrize("on_disk", [False, True])
@pytest.mark.parametrize("known_n", [False, True])
def test_chunked_build_equals_in_memory_constructor(tmp_path, monkeypatch, on_disk, known_n):
    monkeypatch.setattr(ds_mod, "MIN_CAPACITY", 128)  # unknown n: several doublings, then a trim
    ctx, fut = _windows()
    cfg = TeacherConfig(index_type="flat", k=8)
    ref = KnnTeacher(_embed(ctx), ctx, fut, cfg)
    timings = {}
    built = build_datastore(
        _embed,
        _uneven_chunks(ctx, fut),
        cfg,
        tmp_path / "ds" if on_disk else None,
        n_windows=len(ctx) if known_n else None,
        chunk_size=128,
        timings=timings,
    )
    assert built.size == len(ctx) and built.index_type == "flat"
    np.testing.assert_array_equal(built.keys, ref.keys)
    np.testing.assert_array_equal(built.contexts, ctx)
    np.testing.assert_array_equal(built.futures, fut)
    assert isinstance(built.keys, np.memmap) == on_disk
    assert {"embed_s", "write_s", "stats_s", "index_train_s", "index_add_s"} <= set(timings)
    _assert_same_queries(built, ref, ctx)


def test_memmapped_store_round_trips(tmp_path):
    ctx, fut = _windows()
    cfg = TeacherConfig(index_type="auto", exact_max=500, k=8, nprobe=4)  # past the threshold: IVF
    d = tmp_path / "store"
    built = build_datastore(_embed, array_chunks(ctx, fut, 256), cfg, d, chunk_size=100)
    assert built.index_type == "ivf"
    assert {p.name for p in d.iterdir()} == {"keys.npy", "contexts.npy", "futures.npy", "index.faiss", "teacher.json"}
    # the directory is a saved teacher; memory-mapped load reads the same arrays
    loaded = KnnTeacher.load(d, mmap=True)
    assert isinstance(loaded.contexts, np.memmap) and not loaded.contexts.flags.writeable
    assert loaded.index_type == "ivf" and loaded.index_info()["nprobe"] == 4
    np.testing.assert_array_equal(loaded.futures, fut)
    _assert_same_queries(built, loaded, ctx)
    # saving the mapped teacher onto its own files, and elsewhere, keeps the data intact
    loaded.save(d)
    loaded.save(tmp_path / "copy")
    again = KnnTeacher.load(tmp_path / "copy")
    assert not isinstance(again.keys, np.memmap)
    np.testing.assert_array_equal(np.load(d / "keys.npy"), built.keys)
    _assert_same_queries(built, again, ctx)


def test_ivf_chunked_adds_match_a_one_shot_build():
    ctx, fut = _windows()
    cfg = TeacherConfig(index_type="ivf", nlist=16, nprobe=3, k=8)
    ref = KnnTeacher(_embed(ctx), ctx, fut, cfg)
    built = build_datastore(_embed, _uneven_chunks(ctx, fut), cfg, chunk_size=64)
    _assert_same_queries(built, ref, ctx)


def test_build_rejects_bad_chunks():
    ctx, fut = _windows(50)
    with pytest.raises(ValueError, match="no windows"):
        build_datastore(_embed, iter([]))
    with pytest.raises(ValueError, match="embed_fn"):
        build_datastore(lambda c: np.zeros((len(c) - 1, 4), np.float32), array_chunks(ctx, fut))
    with pytest.raises(ValueError, match="width"):
        build_datastore(_embed, iter([(ctx, fut), (ctx, fut[:, :3])]))


def test_backbone_embedder_matches_batch_forecast():
    import torch

    from models.backbone.network import PatchBackbone
    from models.backbone.presets import get_preset
    from models.forecasting.batch import batch_forecast
    from models.forecasting.inputs import strip_left_nan

    torch.manual_seed(0)
    backbone = PatchBackbone(get_preset("tiny"))
    ctx, fut = _windows(40)
    emb = BackboneEmbedder(backbone, H, batch_size=16, keep=True)
    teacher = build_datastore(emb, array_chunks(ctx, fut, 16), TeacherConfig(index_type="flat"), chunk_size=16)
    ref = batch_forecast(backbone, [strip_left_nan(c) for c in ctx], H, C, batch_size=16)
    np.testing.assert_allclose(teacher.keys, ref.embedding, rtol=1e-5, atol=1e-6)
    out = emb.outputs(teacher.keys)
    assert out.embedding is not None and out.norm_quantiles.shape == (40, H, 9)
    np.testing.assert_allclose(out.loc, ref.loc, rtol=1e-5, atol=1e-6)
