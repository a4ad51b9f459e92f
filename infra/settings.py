"""One configuration schema for params.yaml (DVC), the CLI and Prefect parameters.

Precedence (highest first): explicit keyword arguments, TSFM_* environment
variables (nested with ``__``, e.g. ``TSFM_PRETRAIN__MAX_STEPS=50``), params.yaml
(path from ``TSFM_PARAMS`` or ./params.yaml), the defaults below.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DOMAIN_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class PathSettings(BaseModel):
    data_dir: Path = Field(Path("data"), description="canonical Parquet stores (DVC outputs)")
    state_dir: Path = Field(Path(".tsfm"), description="MLflow db, artifacts, run outputs")


class MlflowSettings(BaseModel):
    tracking_uri: str | None = Field(None, description="default: sqlite:///<state_dir>/mlflow.db")
    artifact_root: str | None = Field(
        None, description="artifact location for new experiments; file path or s3://bucket/prefix"
    )


class IngestParams(BaseModel):
    source: str = Field(..., description="local path, s3://bucket/key, builtin:<name> or synthetic:kernelsynth")
    domain: str = Field(..., pattern=DOMAIN_PATTERN)
    horizon: int = Field(6, ge=1, le=1024, description="rows per series reserved for test and for validation")
    min_train: int = Field(8, ge=1, description="minimum train points per series on top of 2*horizon")


class SourceSpec(BaseModel):
    """One entry of ``sources`` (the domains ``dvc repro`` ingests; the key is the domain)."""

    source: str
    horizon: int = Field(6, ge=1, le=1024)
    min_train: int = Field(8, ge=1)


def _default_sources() -> dict[str, SourceSpec]:
    return {
        "synthetic": SourceSpec(source="synthetic:kernelsynth?n_series=400&length=256&seed=0", horizon=8),
        "m3-other": SourceSpec(source="builtin:m3-other", horizon=8),
    }


class PretrainParams(BaseModel):
    preset: str = "tiny"
    domains: list[str] = Field(default_factory=lambda: ["synthetic"], description="stores to pre-train on (train parts only)")
    max_steps: int = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1)
    context_length: int = Field(128, ge=8)
    horizon_length: int = Field(32, ge=1, description="length of the masked future the model learns to fill")
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(40, ge=0)
    seed: int = 0
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: str = Field("auto", description="'auto', a count, or a list like '0,1'")
    strategy: str = "auto"
    precision: str | None = Field(None, description="default: bf16-mixed on GPU, 32-true on CPU")
    num_workers: int = Field(0, ge=0)


class OnboardParams(BaseModel):
    domain: str = Field(..., pattern=DOMAIN_PATTERN)
    source: str | None = Field(None, description="ingest this source first when given")
    horizon: int = Field(6, ge=1, le=1024)
    season_length: int = Field(1, ge=1)
    freq: str | None = Field(None, description="pandas frequency of ds; inferred when omitted")
    context_length: int = Field(64, ge=8)
    stride: int = Field(1, ge=1)
    top_k_candidates: int = Field(50, ge=1)
    k: int = Field(20, ge=1)
    temperature: float = Field(0.12, gt=0)
    align_points: int = Field(16, ge=1)
    adapter_hidden: int = Field(64, ge=4)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(3e-4, gt=0)
    patience: int = Field(3, ge=1)
    alpha_grid: list[float] = Field(default_factory=lambda: [round(0.1 * i, 1) for i in range(11)])
    seed: int = 0

    @field_validator("alpha_grid")
    @classmethod
    def _grid_in_unit_interval(cls, v: list[float]) -> list[float]:
        if not v or any(a < 0 or a > 1 for a in v):
            raise ValueError("alpha_grid needs values in [0, 1]")
        return sorted(set(v))


class ServeParams(BaseModel):
    domain: str = Field("m3-other", pattern=DOMAIN_PATTERN)
    host: str = "127.0.0.1"
    port: int = Field(5001, ge=1, le=65535)
    alias: str = "champion"


class DemoParams(BaseModel):
    """The demo ingests every entry of ``sources``, pre-trains on ``pretrain.domains``
    and onboards ``domain`` (which must be one of the sources)."""

    domain: str = Field("m3-other", pattern=DOMAIN_PATTERN)
    season_length: int = Field(1, ge=1)
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSFM_", env_nested_delimiter="__", extra="ignore")

    paths: PathSettings = PathSettings()
    mlflow: MlflowSettings = MlflowSettings()
    sources: dict[str, SourceSpec] = Field(default_factory=_default_sources)
    pretrain: PretrainParams = PretrainParams(domains=["synthetic", "m3-other"])
    onboard: OnboardParams = OnboardParams(domain="m3-other", horizon=8)
    serve: ServeParams = ServeParams()
    demo: DemoParams = DemoParams()

    @model_validator(mode="before")
    @classmethod
    def _partial_sections_keep_defaults(cls, data):
        """``TSFM_ONBOARD__EPOCHS=4`` alone must not drop the section's other defaults."""
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            given = data.get(name)
            default = field.get_default(call_default_factory=True)
            if isinstance(given, dict) and isinstance(default, BaseModel) and name != "sources":
                data[name] = {**default.model_dump(), **given}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_path = Path(os.environ.get("TSFM_PARAMS", "params.yaml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_path.is_file():
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)

    # Derived locations -------------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{(self.paths.state_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> str:
        if self.mlflow.artifact_root:
            return self.mlflow.artifact_root
        return (self.paths.state_dir / "mlartifacts").resolve().as_uri()

    def store_dir(self, domain: str) -> Path:
        """Canonical Parquet store of one domain (a DVC stage output)."""
        return self.paths.data_dir / "store" / domain

    def run_dir(self, *parts: str) -> Path:
        return self.paths.state_dir.joinpath("runs", *parts)


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
