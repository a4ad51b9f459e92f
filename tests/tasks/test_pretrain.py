"""The pre-training task's side: the train-only corpus, the trainer's job built from the
settings (one spec, no second set of defaults) and the resumable run key."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from infra.settings import PretrainParams
from infra.trainer import trainer_command, trainer_job
from models.pretraining.spec import TrainerJob, TrainingRecipe
from store.corpus import build_corpus, store_versions
from tasks.pretrain import run_key


def _stores(tmp_path) -> list[str]:
    stores = []
    for domain, n in (("alpha", 30), ("beta", 20)):
        store = tmp_path / "store" / domain
        store.mkdir(parents=True)
        pd.DataFrame(
            {"unique_id": np.repeat(["a", "b"], n), "ds": np.tile(np.arange(n), 2), "y": np.arange(2 * n, dtype=float)}
        ).to_parquet(store / "series.parquet", index=False)
        (store / "meta.json").write_text(json.dumps({"domain": domain, "horizon": 4, "md5": domain * 4}))
        stores.append(str(store))
    return stores


def test_corpus_holds_train_parts_only_one_file_per_domain(tmp_path):
    stores = _stores(tmp_path)
    corpus = build_corpus(stores, tmp_path / "run" / "corpus")
    assert list(corpus["files"]) == ["alpha", "beta"]
    beta = pd.read_parquet(corpus["files"]["beta"])
    assert len(beta) == 2 * (20 - 8) and beta["unique_id"].str.startswith("beta/").all()  # train parts only
    # a resumed run finds its corpus files untouched (the trainer's cache of them stays valid)
    mtime = corpus["files"]["beta"].stat().st_mtime_ns
    assert build_corpus(stores, tmp_path / "run" / "corpus")["rows"] == corpus["rows"]
    assert corpus["files"]["beta"].stat().st_mtime_ns == mtime


def test_the_trainer_job_is_the_settings_recipe_and_every_option_reaches_the_trainer(tmp_path):
    stores = _stores(tmp_path)
    corpus = build_corpus(stores, tmp_path / "run" / "corpus")
    params = PretrainParams(
        domains=["alpha", "beta"],
        domain_weights={"beta": 3.0},
        optimizer="lamb",
        accumulate_grad_batches=4,
        ddp_comm_hook="powersgd",
        compile=True,
        activation_checkpointing=True,
        precision="bf16-mixed",
        tsmixup_prob=0.2,
        checkpoint_every=7,
    )
    job = trainer_job(params, corpus["files"], tmp_path / "run", None, None)
    assert job.data == [str(corpus["files"][d].resolve()) for d in ("alpha", "beta")]
    assert job.data_weights == [1.0, 3.0]  # same order; a missing domain weighs 1
    assert job.resume and job.out == str((tmp_path / "run").resolve())
    for name in TrainingRecipe.model_fields:  # every recipe field reaches the job unchanged
        assert getattr(job, name) == getattr(params, name), name
    # the command line the task runs rebuilds exactly this job in the trainer
    cmd = trainer_command(job)
    assert cmd[1:3] == ["-m", "models.pretraining"]
    assert TrainerJob.from_argv(cmd[3:]) == job
    # no weights: no --data-weights, the trainer mixes domains by their number of windows
    plain = trainer_job(PretrainParams(domains=["alpha", "beta"]), corpus["files"], tmp_path / "run", None, None)
    assert plain.data_weights is None and "--data-weights" not in trainer_command(plain)
    with pytest.raises(ValueError, match="not in domains"):
        PretrainParams(domains=["alpha"], domain_weights={"gamma": 1.0})


def test_the_trainer_has_no_defaults_of_its_own(tmp_path):
    """A flag left out means the schema's default: the trainer and the settings cannot drift."""
    data = tmp_path / "d.parquet"
    data.write_bytes(b"")
    job = TrainerJob.from_argv(["--data", str(data), "--out", str(tmp_path / "o")])
    schema = PretrainParams()
    for name in TrainingRecipe.model_fields:
        assert getattr(job, name) == getattr(schema, name), name
    assert issubclass(PretrainParams, TrainingRecipe)
    for action in TrainerJob.parser()._actions:  # argparse holds no default that could differ
        assert action.default == argparse.SUPPRESS, action.dest


def test_run_key_follows_params_data_and_trainer_code(tmp_path):
    stores = _stores(tmp_path)
    params = PretrainParams(domains=["alpha", "beta"])
    versions = store_versions(stores)
    assert run_key(params, versions) == run_key(params.model_copy(), dict(versions))
    assert run_key(params, versions) != run_key(params.model_copy(update={"lr": 1e-3}), versions)
    assert run_key(params, versions) != run_key(params, {**versions, "beta": "changed"})
