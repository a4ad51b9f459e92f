"""One configuration schema: params.yaml, TSFM_* variables and the CLI's --set all land in it,
and none of them can hold a key it does not know."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from infra.params import ParamsError, build_params
from infra.settings import OnboardParams, Settings, SourceSpec, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_tsfm_environment(monkeypatch):
    """Only what a test sets: the session's demo run leaves its TSFM_* overrides in place."""
    for name in [n for n in os.environ if n.startswith("TSFM_")]:
        monkeypatch.delenv(name)


def _unknown(values: dict, model: type[BaseModel], where: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        field = model.model_fields.get(key)
        if field is None:
            out.append(f"{where}{key}")
            continue
        sub = field.annotation
        if key == "sources" and model is Settings:
            for domain, spec in value.items():
                out += _unknown(spec, SourceSpec, f"sources.{domain}.")
        elif isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(value, dict):
            out += _unknown(value, sub, f"{where}{key}.")
    return out


@pytest.mark.parametrize(
    "path",
    [
        "params.yaml",
        *sorted(
            str(p.relative_to(ROOT))
            for p in [*ROOT.glob("infra/profiles/*.yaml"), *ROOT.glob("benchmarks/profiles/*.yaml")]
        ),
    ],
)
def test_every_settings_file_holds_only_keys_the_schema_knows(path):
    assert _unknown(yaml.safe_load((ROOT / path).read_text()) or {}, Settings) == []


def test_params_yaml_loads(monkeypatch):
    """The repository's params.yaml holds only overrides (none for the demo project); the values DVC
    reads (dvc.params.yaml) are the settings it gives."""
    assert yaml.safe_load((ROOT / "params.yaml").read_text()) == {}
    values = yaml.safe_load((ROOT / "dvc.params.yaml").read_text())["tsfm"]
    monkeypatch.setenv("TSFM_PARAMS", str(ROOT / "params.yaml"))
    settings = load_settings()
    assert settings.onboard.teacher.exact_max == values["onboard"]["teacher"]["exact_max"]
    assert settings.onboard.finetune.max_steps == values["onboard"]["finetune"]["max_steps"]


def test_a_misspelt_key_fails_loudly_instead_of_keeping_a_default(monkeypatch, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"onboard": {"domain": "x", "teacher": {"kk": 10}}}))
    monkeypatch.setenv("TSFM_PARAMS", str(params))
    with pytest.raises(ValidationError, match="kk"):
        load_settings()
    assert _unknown({"onboard": {"teacher": {"kk": 1}}, "pretrain": {"maxsteps": 1}}, Settings) == [
        "onboard.teacher.kk",
        "pretrain.maxsteps",
    ]


def test_nested_sections_from_the_environment_keep_their_other_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("TSFM_PARAMS", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("TSFM_ONBOARD__TEACHER__K", "7")
    monkeypatch.setenv("TSFM_SCHEDULES__INGEST_CRON", "null")
    s = load_settings()
    assert s.onboard.teacher.k == 7 and s.onboard.teacher.top_k_candidates == 50
    assert s.onboard.domain == "m3-other" and s.onboard.horizon == 8  # the section's own defaults stay


def test_set_and_named_options_go_through_one_helper_with_clear_messages():
    base = OnboardParams(domain="d", horizon=8)
    p = build_params(
        OnboardParams,
        base,
        ["teacher.k=10", "fusion.alpha_grid=[0, 0.5, 1]", "adapter.epochs=3"],
        {"horizon": 12, "finetune.max_steps": 5},
    )
    assert (p.teacher.k, p.fusion.alpha_grid, p.adapter.epochs, p.horizon, p.finetune.max_steps) == (
        10,
        [0.0, 0.5, 1.0],
        3,
        12,
        5,
    )
    assert base.teacher.k == 20  # the base is not changed
    with pytest.raises(ParamsError, match=r"--set teacher\.kk: unknown key; keys are .*teacher\.k\b"):
        build_params(OnboardParams, base, ["teacher.kk=1"])
    with pytest.raises(ParamsError, match=r"--set teachr\.k: 'teachr' is not a section"):
        build_params(OnboardParams, base, ["teachr.k=1"])
    with pytest.raises(ParamsError, match=r"--set adapter\.epochs must be >= 1"):
        build_params(OnboardParams, base, ["adapter.epochs=0"])
    with pytest.raises(ParamsError, match=r"--finetune-steps must be >= 0"):
        build_params(
            OnboardParams, base, named={"finetune.max_steps": -1}, flags={"finetune.max_steps": "--finetune-steps"}
        )
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        build_params(OnboardParams, base, ["teacher.k"])


def test_tsfm_config_says_where_each_setting_comes_from(tmp_path, monkeypatch):
    """Default, profile, params.yaml and TSFM_* each named as the source; the effective value wins in that order."""
    from typer.testing import CliRunner

    from tsfm_cli.main import app

    for key in [k for k in os.environ if k.startswith("TSFM_")]:
        monkeypatch.delenv(key)
    (tmp_path / "params.yaml").write_text("onboard:\n  horizon: 12\n  teacher:\n    k: 9\npretrain:\n  lr: 0.003\n")
    monkeypatch.setenv("TSFM_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.setenv("TSFM_ONBOARD__TEACHER__K", "7")
    monkeypatch.setenv("TSFM_PROFILE", "cluster")
    result = CliRunner().invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["key"]: r for r in json.loads(result.stdout)}
    assert (
        rows["onboard.teacher.k"]["value"] == 7
        and rows["onboard.teacher.k"]["source"] == "env TSFM_ONBOARD__TEACHER__K"
    )
    assert rows["onboard.horizon"]["value"] == 12 and rows["onboard.horizon"]["source"].endswith("params.yaml")
    assert rows["onboard.adapter.epochs"]["source"] == "default"
    assert rows["pretrain.lr"]["value"] == rows["pretrain.lr"]["default"]  # params.yaml repeating a default
    assert any(r["source"] == "profile cluster" for r in rows.values())
    changed = CliRunner().invoke(app, ["config", "--changed"])
    assert "onboard.teacher.k" in changed.stdout and "pretrain.lr " not in changed.stdout
    assert "onboard.adapter.epochs" not in changed.stdout
