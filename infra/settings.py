"""One configuration schema for params.yaml (DVC), the CLI and Prefect parameters.

Precedence (highest first): explicit keyword arguments, TSFM_* environment
variables (nested with ``__``, e.g. ``TSFM_PRETRAIN__MAX_STEPS=50``), params.yaml
(path from ``TSFM_PARAMS`` or ./params.yaml), the settings profile, the defaults below.

The profile (``TSFM_PROFILE``, default ``embedded``: no file, nothing changes) is
``infra/profiles/<name>.yaml``, layered under params.yaml; ``cluster`` points MLflow,
artifacts and Prefect at the servers of ``infra/compose.yaml``. A ``null`` in params.yaml
means "not set here" for values the profile sets. ``apply_runtime_env`` exports what other
libraries read from their own environment variables (Prefect's API URL, the S3 endpoint).
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from infra.errors import InputError
from models.memory.config import OnboardingConfig
from models.pretraining.spec import TrainingRecipe

DEFAULT_BACKBONE = "models:/backbone@champion"  # the registered backbone every stage starts from
# the shipped long-context backbone (models/backbone/shipped_long/), offered to domains of daily or finer data
LONG_CONTEXT_BACKBONE = "models:/backbone@long-context"
DOMAIN_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # a domain names folders, models and Prefect deployments
DEFAULT_HORIZON = 8  # held-out points per series where nothing names a horizon: sources entries and onboarding alike


class Section(BaseModel):
    # a misspelt key in params.yaml or TSFM_* fails loudly instead of silently keeping a default
    model_config = ConfigDict(extra="forbid")


class PathSettings(Section):
    data_dir: Path = Field(Path("data"), description="canonical Parquet stores (DVC outputs)")
    state_dir: Path = Field(Path(".tsfm"), description="MLflow db, artifacts, run outputs")


class MlflowSettings(Section):
    tracking_uri: str | None = Field(None, description="default: sqlite:///<state_dir>/mlflow.db")
    artifact_root: str | None = Field(
        None, description="artifact location for new experiments; file path or s3://bucket/prefix"
    )


class PrefectSettings(Section):
    """Prefect reads its own settings; ``apply_runtime_env`` exports these before prefect is imported."""

    api_url: str | None = Field(
        None,
        description="Prefect server API, e.g. http://127.0.0.1:4200/api "
        "(exported as PREFECT_API_URL); None = the embedded ephemeral API",
    )


class S3Settings(Section):
    endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint such as MinIO (exported as "
        "AWS_ENDPOINT_URL_S3; boto3, MLflow and DVC read it); None = AWS",
    )


# the ds column's format, for ingest and for a batch of another source (and their CLI options' help)
DateFormat = Annotated[
    str | None,
    Field(
        description="strftime codes the ds column is written in, e.g. %d.%m.%Y, "
        "where tsfm cannot tell day from month; excel (or excel1904) for spreadsheet serial "
        "day numbers such as 43831; unix (or unix_ms) for Unix time; None: ISO dates, numeric "
        "dates in the order their values allow, YYYYMMDD, period labels (2010 Q1, 2024-W01)"
    ),
]


def _canonical_targets(v: dict[str, str]) -> dict[str, str]:
    bad = sorted(set(v.values()) - {"unique_id", "ds", "y"})
    if bad:
        raise ValueError(f"columns map source names to unique_id, ds or y; got {bad}")
    if len(set(v.values())) < len(v):
        raise ValueError("columns maps two source columns to the same name")
    return v


# a source's own column names: one type for ingest, a `sources` entry, onboarding and a batch of another source
Columns = Annotated[
    dict[str, str],
    Field(
        description="the source's column names for unique_id, "
        "ds and y where they differ, e.g. {date: ds, value: y, series: unique_id}"
    ),
    AfterValidator(_canonical_targets),
]


class IngestParams(Section):
    source: str = Field(..., description="local path, s3://bucket/key, builtin:<name> or synthetic:kernelsynth")
    domain: str = Field(..., pattern=DOMAIN_PATTERN)
    horizon: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="points per series held out for test (and "
        "each validation window); None: the domain's `sources` entry, else onboard.horizon",
    )
    min_train: int = Field(
        8,
        ge=2,
        description="minimum train points per series on top of 2*horizon (at least 2: "
        "one point of context and one of future for the memory adapter's datastore)",
    )
    columns: Columns = Field(default_factory=dict)
    date_format: DateFormat = None


class SourceSpec(Section):
    """One entry of ``sources`` (the domains ``dvc repro`` ingests; the key is the domain)."""

    source: str
    horizon: int = Field(DEFAULT_HORIZON, ge=1, le=1024, description="test (and validation) points per series")
    min_train: int = Field(8, ge=2)
    # how to read it, so that every scheduled re-ingest reads it as the first one did
    columns: Columns = Field(default_factory=dict)
    date_format: DateFormat = None


def _default_sources() -> dict[str, SourceSpec]:
    return {
        "synthetic": SourceSpec(source="synthetic:kernelsynth?n_series=400&length=256&seed=0"),
        "m3-other": SourceSpec(source="builtin:m3-other"),
    }


class PretrainParams(TrainingRecipe):
    """``python -m models.pretraining``'s recipe (every field and default is
    ``models.pretraining.spec.TrainingRecipe``'s) and the domains it trains on; one run
    folder per (params, data versions), so a re-run after a crash resumes from its checkpoint."""

    domains: list[str] = Field(
        default_factory=lambda: ["synthetic"], description="stores to pre-train on (train parts only)"
    )
    domain_weights: dict[str, float] = Field(
        default_factory=dict,
        description="mixture weight per domain (a missing domain weighs 1); {} = in "
        "proportion to each domain's windows",
    )

    @model_validator(mode="after")
    def _mixture_is_consistent(self) -> "PretrainParams":
        unknown = set(self.domain_weights) - set(self.domains)
        if unknown:
            raise ValueError(f"domain_weights for domains not in domains: {sorted(unknown)}")
        if any(w < 0 for w in self.domain_weights.values()):
            raise ValueError("domain_weights must be >= 0")
        if self.domains and sum(self.domain_weights.get(d, 1.0) for d in self.domains) <= 0:
            raise ValueError("domain_weights must leave a positive total weight")
        return self


class OnboardTarget(Section):
    """What to onboard: the fields a person fills in first (the Prefect form lists them in this
    order, before the tuning sections of ``OnboardingConfig``)."""

    domain: str = Field(
        ...,
        pattern=DOMAIN_PATTERN,
        description="the new domain's name: lower-case letters, "
        "digits, '-' and '_', starting with a letter or digit, at most 63 characters (it names "
        "the store, the model forecaster-NAME and its deployments)",
    )
    # a plain string, not str | None: the Prefect form shows a text box rather than a type switch
    source: str = Field(
        "",
        description="where its data is: a CSV or Parquet file or folder on the worker's "
        "disk, s3://bucket/key, builtin:NAME (m3-monthly, vic_elec, tourism, ...) or "
        "synthetic:...; ingested first. Empty: the domain's store as already ingested",
    )
    horizon: int = Field(
        DEFAULT_HORIZON,
        ge=1,
        le=1024,
        description="test (and validation) points per series, where the source has no per-series horizons",
    )
    columns: Columns = Field(default_factory=dict)  # how to read the source, as for ingest
    date_format: DateFormat = None
    season_length: int | None = Field(
        None,
        ge=1,
        description="steps per seasonal cycle (12 for monthly data, "
        "...); None: from the data, the source's per-series seasons or else the "
        "store's frequency",
    )
    val_origins: int | None = Field(
        None,
        ge=1,
        le=64,
        description="validation windows per series, each a horizon "
        "apart before the test window (fewer where a short series cannot spare them): they "
        "choose the fusion weight, the ensemble's weights and the champion; None: by the "
        "domain's size, about 200 windows in all (3 per series from 67 series, up to 30)",
    )
    series_horizons: bool = Field(
        True,
        description="use the source's own per-series horizons and season "
        "lengths when it has them (M3); horizon/season_length apply otherwise",
    )
    freq: str | None = Field(None, description="pandas frequency of ds; inferred when omitted")
    long_context_backbone: bool = Field(
        False,
        description="for daily or finer data onboarded on the default backbone, also score the shipped "
        "long-context backbone (2,048 steps) on the same validation windows and adapt it instead where it "
        "wins by the promotion gate's rule (off by default: it won validation but lost the benchmark's "
        "test days, docs/benchmarks.md)",
    )

    @field_validator("source", mode="before")
    @classmethod
    def _no_source(cls, v: str | None) -> str:
        return "" if v is None else v


# Bases in this order put OnboardTarget's fields first: pydantic collects fields from the last base on.
class OnboardParams(OnboardingConfig, OnboardTarget):
    """One domain's onboarding. Domain and Source are all it needs; the fields after them tune each
    stage (teacher, adapter, fusion, finetune: the same nesting as params.yaml and `tsfm onboard
    --set`) and start at the project's settings."""


class ServeParams(Section):
    """`tsfm serve`: one process serving every domain's ``forecaster-<domain>@<alias>`` (serving/)."""

    domains: list[str] = Field(
        default_factory=list,
        description="domains to serve; [] = every forecaster-* model "
        "that has the alias (new ones are picked up while running)",
    )
    domain: str = Field(
        "m3-other",
        pattern=DOMAIN_PATTERN,
        description="`tsfm serve --mlflow`: the one domain MLflow's scoring server serves",
    )
    host: str = Field("127.0.0.1", description="bind address; a non-loopback one needs a token or insecure")
    port: int = Field(5001, ge=1, le=65535, description="TCP port")
    alias: str = Field("champion", description="the alias served")
    token: SecretStr | None = Field(
        None,
        description="bearer token for /invocations, /reload and /metrics "
        "(env TSFM_SERVE__TOKEN); None = open, allowed on loopback only",
    )
    insecure: bool = Field(False, description="serve a non-loopback host without a token (warned at every start)")
    max_body_mb: float = Field(32.0, gt=0, description="largest request body; bigger ones get 413")
    body_timeout_s: float = Field(30.0, gt=0, description="time to receive a request body; a stalled upload gets 408")
    max_batch_series: int = Field(
        256,
        ge=1,
        description="most series one forward pass gathers; a bigger request "
        "is answered slice by slice, each slice queued behind the requests that came "
        "meanwhile, so it cannot starve small ones",
    )
    max_request_series: int = Field(5000, ge=1, description="most series one request may hold; more get 413")
    drift_requests_per_minute: int = Field(
        60,
        ge=0,
        description="answered requests per client (token or address) "
        "and minute whose inputs enter the drift statistics; the rest are "
        "served but not counted, so no one client can steer the drift alarm",
    )
    max_wait_ms: float = Field(5.0, ge=0, description="how long a forward pass waits for more requests")
    reload_interval_s: float = Field(10.0, ge=0, description="alias poll interval; 0 = only POST /reload")
    device: str = Field("cpu", description="torch device of the served models: cpu, cuda, cuda:1")

    @field_validator("token")
    @classmethod
    def _no_empty_token(cls, v: SecretStr | None) -> SecretStr | None:
        # an empty token (TSFM_SERVE__TOKEN= from a template) would accept "Bearer " : it means none
        return v if v is not None and v.get_secret_value().strip() else None

    @field_validator("domains")
    @classmethod
    def _domain_names(cls, v: list[str]) -> list[str]:
        import re

        bad = [d for d in v if not re.match(DOMAIN_PATTERN, d)]
        if bad:
            raise ValueError(f"invalid domain name(s) {bad}")
        return list(dict.fromkeys(v))


class DemoParams(Section):
    """The demo ingests every entry of ``sources``, continues pre-training the shipped backbone on
    the train parts of ``pretrain.domains`` (from scratch with ``pretrain`` when the checkout ships
    none) and onboards ``domain`` (which must be one of the sources)."""

    domain: str = Field("m3-other", pattern=DOMAIN_PATTERN)
    continue_steps: int = Field(
        60,
        ge=0,
        description="continued pre-training steps of the shipped backbone "
        "(the gate keeps the shipped one unless they help); 0: onboard it as shipped",
    )
    continue_lr: float = Field(3e-4, gt=0, description="their peak learning rate (a tenth of pre-training's)")
    season_length: int | None = Field(None, ge=1, description="None: from the data (see onboard.season_length)")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")


class ForecastParams(Section):
    """`tsfm forecast`: the domain's champion (any family) forecasts every series of its latest store (or of
    ``source``) into one Parquet partition per origin (``batch/``); chunks of series run on a Dask cluster."""

    domain: str = Field("m3-other", pattern=DOMAIN_PATTERN, description="the onboarded domain whose champion forecasts")
    source: str | None = Field(
        None,
        description="forecast this source's series instead of the domain's latest "
        "store: local path, s3://bucket/key or builtin:<name> (rows validated as on ingest)",
    )
    columns: Columns = Field(default_factory=dict)
    date_format: DateFormat = None
    output: str | None = Field(
        None, description="dataset root, local folder or s3://bucket/prefix; None = <data_dir>/forecasts/<domain>"
    )
    horizon: int | None = Field(
        None, ge=1, le=1024, description="steps per series; None = the champion's default (the domain's horizon)"
    )
    origin: date | None = Field(
        None,
        description="the batch's as-of date, its partition (origin=YYYY-MM-DD); None "
        "= the run's scheduled date in schedules.timezone (today for a manual run)",
    )
    alias: str = Field("champion", description="which version of forecaster-<domain> forecasts")
    max_history: int = Field(
        2048,
        ge=8,
        description="most recent points per series given to the model (a neural "
        "model reads its own context length of them)",
    )
    chunk_series: int = Field(2000, ge=1, description="series per task: the unit a worker runs and a retry redoes")
    executor: Literal["dask", "inline"] = Field(
        "dask",
        description="dask: chunks on a Dask cluster (a local one of "
        "`workers` processes unless dask_address names a scheduler); inline: "
        "one after another in the flow's process",
    )
    dask_address: str | None = Field(
        None,
        description="an existing Dask scheduler, e.g. tcp://dask-scheduler:8786 "
        "(the cluster profile); None = start a local cluster for the run",
    )
    workers: int = Field(2, ge=1, le=256, description="worker processes of the local cluster")
    threads_per_worker: int = Field(1, ge=1, le=64, description="threads per worker (torch and numba use as many)")
    retries: int = Field(2, ge=0, le=10, description="extra attempts of a failed chunk (the others are not redone)")


class MonitorParams(Section):
    """`tsfm monitor`: realized accuracy of the stored batch forecasts once actuals cover them, drift of the
    domain's data (and of the contexts its servers received) from what its champion was trained on, and a
    ``tsfm.domain.degraded`` event when either crosses its threshold (``evaluation/realized.py``, ``drift.py``)."""

    domain: str | None = Field(
        None, pattern=DOMAIN_PATTERN, description="the domain to check; None = every onboarded domain"
    )
    forecasts: str | None = Field(
        None, description="batch forecast dataset root; None = forecast.output, else <data_dir>/forecasts/<domain>"
    )
    degraded_ratio: float = Field(
        1.5,
        gt=1,
        description="realized / validation figure above which the domain "
        "is degraded (e.g. realized MASE 1.5 x the champion's validation MASE)",
    )
    ratio_metrics: list[Literal["MASE", "sCRPS", "sMAPE"]] = Field(
        default_factory=lambda: ["MASE"],
        description="metrics the ratio to validation is judged on. MASE by "
        "default: its scale is the series' own history, while a window's sCRPS divides by its own sum |y| and "
        "swings with a day of near-zero actuals (sCRPS is judged against seasonal naive's on the same points)",
    )
    naive_ratio: float = Field(
        1.0,
        ge=0,
        description="realized sCRPS / seasonal naive's on the same points (forecast "
        "from the same history) above which the domain is degraded: the served forecasts "
        "lose to the baseline planners already have; 0 = not judged",
    )
    min_points: int = Field(
        20,
        ge=1,
        description="forecast points actuals must cover before realized accuracy is "
        "judged (fewer: reported, not judged)",
    )
    window: int = Field(64, ge=8, description="most recent points per series the drift features are computed on")
    psi_threshold: float = Field(
        0.25,
        gt=0,
        description="population stability index above which a feature has "
        "drifted (0.1: moderate, 0.25: significant, by the usual convention)",
    )
    min_series: int = Field(30, ge=1, description="series (or served contexts) each side needs before drift is judged")
    serving_metrics: list[str] = Field(
        default_factory=list,
        description="/metrics URLs of the serving replicas; "
        "their input histograms are summed (as Prometheus does) for serving drift",
    )
    prometheus_url: str | None = Field(
        None,
        description="Prometheus that scrapes the replicas, e.g. "
        "http://prometheus:9090 (used instead of serving_metrics)",
    )
    serving_range: str = Field("7d", description="with prometheus_url: the contexts of this last range")
    max_champion_age_days: float = Field(
        30.0,
        gt=0,
        description="a champion not re-validated for longer is stale (the server exports it for the alert rule)",
    )
    emit_events: bool = Field(True, description="emit tsfm.domain.degraded (re-onboarding's trigger)")

    @model_validator(mode="after")
    def _one_source_of_serving_metrics(self) -> "MonitorParams":
        if self.prometheus_url and self.serving_metrics:
            raise ValueError(
                "give either --prometheus-url (monitor.prometheus_url) or --serving-metrics "
                "(monitor.serving_metrics), not both: Prometheus already sums the replicas"
            )
        return self


EVALUATE_BASELINES = ("seasonal_naive", "theta", "auto_ets")


class EvaluateParams(Section):
    """Zero-shot evaluation of a registered backbone on packaged real data (M3, electricity)."""

    backbone: str = Field(
        DEFAULT_BACKBONE, description="models:/<name>@<alias>, models:/<name>/<version>, or a version of `backbone`"
    )
    datasets: list[str] = Field(
        default_factory=lambda: ["m3", "vic_elec", "epf_fr_be"],
        description="m3, m3-<category>[-<frequency>], vic_elec, epf_fr_be",
    )
    max_series: int | None = Field(None, ge=1, description="evenly spaced subsample per dataset; None = all")
    windows: int = Field(
        7,
        ge=1,
        le=365,
        description="rolling test windows (stride = horizon, the last one is the test part) "
        "for the electricity series; M3 has its one official test window",
    )
    baselines: list[str] = Field(
        default_factory=lambda: list(EVALUATE_BASELINES),
        description="statsforecast baselines; seasonal_naive is required (relative scores)",
    )
    context_length: int | None = Field(
        None, ge=8, description="default: the backbone's training context; capped by its max_context"
    )
    max_history: int = Field(2016, ge=16, description="most recent points the statistical baselines are fitted on")
    n_jobs: int = Field(0, ge=0, description="processes for the statistical baselines; 0 = all cores")
    batch_size: int = Field(256, ge=1)
    device: str = Field("auto", description="backbone inference device: auto, cpu, cuda, cuda:1, ...")

    @field_validator("datasets")
    @classmethod
    def _some_datasets(cls, v: list[str]) -> list[str]:
        v = [d.strip().lower().removeprefix("builtin:") for d in v if d.strip()]
        if not v:
            raise ValueError("at least one dataset is required")
        return list(dict.fromkeys(v))

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(EVALUATE_BASELINES))
        if unknown:
            raise ValueError(f"unknown baseline(s) {unknown}; known: {list(EVALUATE_BASELINES)}")
        if "seasonal_naive" not in v:
            raise ValueError("seasonal_naive is required: relative scores are computed against it")
        return [b for b in EVALUATE_BASELINES if b in v]


class ScheduleSettings(Section):
    """Cron schedules of the deployments `tsfm deploy` registers (None = on demand only)."""

    ingest_cron: str | None = Field("0 2 * * *", description="refresh every source's store")
    retrain_cron: str | None = Field("0 3 * * 0", description="re-train the backbone on the ingested domains")
    onboard_cron: str | None = Field("0 5 * * *", description="re-onboard each domain of onboard_domains")
    forecast_cron: str | None = Field(
        "0 6 * * *", description="batch-forecast every onboarded domain (after its re-onboarding)"
    )
    monitor_cron: str | None = Field(
        None,
        description="check every domain's realized accuracy and drift; the "
        "monitor also runs whenever a re-ingest changes a domain's store",
    )
    onboard_domains: list[str] = Field(
        default_factory=list,
        description="domains re-onboarded on schedule; "
        "default: every source except the pre-training-only synthetic one",
    )
    timezone: str = "UTC"
    watch_interval_s: int | None = Field(
        300,
        ge=0,
        description="seconds between checks of the sources for "
        "new data (tsfm.source.updated re-onboards a domain); None/0 = off",
    )


class PromoteSettings(Section):
    """The promotion gate (``evaluation.gate.beats``): a challenger replaces the incumbent (among one
    onboarding's candidates, or the champion) only when its validation sCRPS is lower by this relative
    margin and, scored window by window on the same windows, in ``confidence`` of paired resamples."""

    margin: float = Field(0.01, ge=0, lt=1, description="relative improvement required, e.g. 0.01 = 1%")
    confidence: float = Field(
        0.9,
        ge=0,
        le=1,
        description="share of paired bootstrap resamples (series with "
        "their windows) in which the challenger must still win by the margin; 0 = the "
        "means alone decide",
    )


class RetrySettings(Section):
    """Retries of the tasks that talk to remotes (S3, an MLflow server): transient errors only
    (connection refused/reset, timeouts, HTTP 429/5xx); bad input fails at once."""

    retries: int = Field(2, ge=0, description="extra attempts after the first")
    backoff_s: float = Field(2.0, ge=0, description="first delay; doubles per attempt (exponential backoff)")
    jitter: float = Field(0.5, ge=0, description="random extra delay, as a fraction of each delay")


# Settings profiles -----------------------------------------------------------------
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = "embedded"


class ProfileError(InputError):
    """An unknown TSFM_PROFILE (the message lists the known ones)."""


def available_profiles() -> list[str]:
    return sorted({DEFAULT_PROFILE, *(p.stem for p in PROFILES_DIR.glob("*.yaml"))})


def profile_values(name: str) -> dict:
    """The settings a profile sets: ``infra/profiles/<name>.yaml``, or a YAML file path."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        if name == DEFAULT_PROFILE:
            return {}  # the embedded default needs no file
        raise ProfileError(
            f"unknown settings profile {name!r} (TSFM_PROFILE); "
            f"available: {', '.join(available_profiles())}, or a path to a .yaml file"
        )
    return _read_yaml(path)


def _read_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings sections, got {type(data).__name__}")
    data.pop("profile", None)  # the profile is chosen by TSFM_PROFILE or a keyword, never by a file
    return data


def _merged(defaults: dict, given: dict) -> dict:
    """``given`` over ``defaults``, nested sections merged key by key (a given None stays None)."""
    out = dict(defaults)
    for key, value in given.items():
        below = defaults.get(key)
        out[key] = _merged(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return out


def _layer(upper: dict, lower: dict) -> dict:
    """``upper`` over ``lower``, section by section; a None in ``upper`` keeps ``lower``'s value
    (params.yaml lists ``tracking_uri: null`` meaning "default", which must not hide the profile)."""
    out = dict(lower)
    for key, value in upper.items():
        below = lower.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            out[key] = _layer(value, below)
        elif value is not None or below is None:
            out[key] = value
    return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSFM_", env_nested_delimiter="__", extra="ignore")

    profile: str = Field(
        DEFAULT_PROFILE,
        description="settings profile (TSFM_PROFILE): infra/profiles/<name>.yaml "
        "layered under params.yaml; embedded = one machine, no servers",
    )
    paths: PathSettings = PathSettings()
    mlflow: MlflowSettings = MlflowSettings()
    prefect: PrefectSettings = PrefectSettings()
    s3: S3Settings = S3Settings()
    sources: dict[str, SourceSpec] = Field(default_factory=_default_sources)
    pretrain: PretrainParams = PretrainParams(domains=["synthetic", "m3-other"])
    onboard: OnboardParams = OnboardParams(domain="m3-other")
    serve: ServeParams = ServeParams()
    demo: DemoParams = DemoParams()
    evaluate: EvaluateParams = EvaluateParams()
    forecast: ForecastParams = ForecastParams()
    monitor: MonitorParams = MonitorParams()
    schedules: ScheduleSettings = ScheduleSettings()
    promote: PromoteSettings = PromoteSettings()
    retry: RetrySettings = RetrySettings()

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
                data[name] = _merged(default.model_dump(), given)
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
        # kwargs > TSFM_* env > params.yaml > profile > defaults; the two files are merged here
        # (so a null in params.yaml does not hide a profile value) and enter as one source
        init_kwargs = getattr(init_settings, "init_kwargs", {}) or {}
        profile = init_kwargs.get("profile") or os.environ.get("TSFM_PROFILE") or DEFAULT_PROFILE
        files = profile_values(profile)
        yaml_path = Path(os.environ.get("TSFM_PARAMS", "params.yaml"))
        if yaml_path.is_file():
            files = _layer(_read_yaml(yaml_path), files)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if files:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=files))
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

    def forecast_dir(self, domain: str) -> str:
        """Where a domain's batch forecasts go when ``forecast.output`` names nowhere else."""
        return str((self.paths.data_dir / "forecasts" / domain).resolve())

    def adhoc_forecast_dir(self, domain: str, source: str) -> str:
        """Where a batch of ``source`` (not the domain's store) goes when no output is named: beside the
        domain's dataset, never in it, one folder per source name."""
        stem = re.sub(r"[^a-z0-9_-]+", "-", source.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-") or "source"
        return str((self.paths.data_dir / "forecasts-adhoc" / domain / stem).resolve())

    def monitor_dir(self, domain: str) -> Path:
        """The monitor's ledger of scored forecast points and its event memory, per domain."""
        return self.paths.state_dir / "monitor" / domain

    def run_dir(self, *parts: str) -> Path:
        return self.paths.state_dir.joinpath("runs", *parts)


_LOADED: dict[tuple, Settings] = {}


def _inputs() -> tuple:
    """What the settings are made of, besides the code: the TSFM_* variables and params.yaml's
    path and bytes (a profile is named by TSFM_PROFILE)."""
    path = Path(os.environ.get("TSFM_PARAMS", "params.yaml")).resolve()
    try:
        text = path.read_bytes()
    except OSError:
        text = None
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("TSFM_"))), str(path), text


def load_settings(**overrides) -> Settings:
    """The effective settings (keyword arguments > TSFM_* > params.yaml > profile > defaults). Without
    keyword arguments they are loaded once per process for the same inputs and shared by the CLI, the
    flows and the tasks it runs; treat them as read-only (``model_copy(update=...)`` for a variant)."""
    if overrides:
        return Settings(**overrides)
    key = _inputs()
    if key not in _LOADED:
        _LOADED.clear()  # inputs changed (a test, a long-lived worker): only the current ones are kept
        _LOADED[key] = Settings()
    return _LOADED[key]


def runtime_env(settings: Settings) -> dict[str, str]:
    """Environment variables other libraries read instead of tsfm's settings. Prefect keeps its
    state (the embedded API's database of flow runs) under the project's state folder, not in
    the ``~/.prefect`` every project on the machine shares."""
    env = {
        "PREFECT_API_URL": settings.prefect.api_url,
        "AWS_ENDPOINT_URL_S3": settings.s3.endpoint_url,
        "PREFECT_HOME": str((settings.paths.state_dir / "prefect").resolve()),
    }
    return {k: v for k, v in env.items() if v}


def apply_runtime_env(settings: Settings, environ=None) -> dict[str, str]:
    """Export ``runtime_env`` where the variable is not set already; call it before prefect is
    imported (Prefect reads PREFECT_API_URL once, at import). A variable set by hand wins, as
    the environment wins over the profile everywhere else. Returns what it set."""
    environ = os.environ if environ is None else environ
    added = {k: v for k, v in runtime_env(settings).items() if not environ.get(k)}
    environ.update(added)
    return added
