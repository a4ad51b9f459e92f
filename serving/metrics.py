"""Prometheus metrics of one serving process (its own registry, not the global one).

Besides traffic (requests by domain and status, latency, batch sizes) it records what
the inputs look like per domain, so drift shows on a dashboard before it shows in the
errors: context length and the per-series features of ``evaluation.drift`` (level, scale,
trend and seasonal strength, intermittency, missing share) as histograms on the buckets the
monitor bins its training data with; the monitor sums them over replicas and computes PSI.

It also re-exports what the registry says about each domain (read on every alias poll):
when its champion was last validated (``champion.validated_at``) and the monitor's last verdict
(``monitor.*`` tags of forecaster-<domain>), so alert rules and dashboards see both.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from evaluation.drift import BUCKETS, FEATURE_DOCS, FEATURES, features_of

UNKNOWN = "unknown"  # label for requests that name no served domain (keeps label values bounded)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LENGTH_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
FEATURE_WINDOW = 512  # most recent points per series the features are computed on (bounded work per request)
_OLD_NAMES = {"level": "input_level_log10", "scale": "input_cv"}  # kept from before the other features
FEATURE_METRICS = {f: f"tsfm_serve_{_OLD_NAMES.get(f, 'input_' + f)}" for f in FEATURES}  # each feature's histogram


class ServingMetrics:
    def __init__(self, max_champion_age_s: float | None = None) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)

        def per_domain(kind, name: str, doc: str, buckets=None):
            extra = {"buckets": buckets} if buckets else {}
            return kind(f"tsfm_serve_{name}", doc, ["domain"], registry=r, **extra)

        self.requests = Counter(
            "tsfm_serve_requests", "Scoring requests by domain and HTTP status", ["domain", "code"], registry=r
        )
        self.latency = per_domain(
            Histogram, "request_seconds", "Scoring request latency (body read to answer)", LATENCY_BUCKETS
        )
        self.batch_requests = per_domain(
            Histogram, "batch_requests", "Requests answered by one forward pass", COUNT_BUCKETS
        )
        self.batch_series = per_domain(Histogram, "batch_series", "Series in one forward pass", COUNT_BUCKETS)
        self.forward_seconds = per_domain(
            Histogram, "forward_seconds", "Time of one batched forward pass", LATENCY_BUCKETS
        )
        self.series = per_domain(Counter, "input_series", "Series received")
        self.values = per_domain(Counter, "input_values", "Context values received (missing included)")
        self.missing = per_domain(Counter, "input_missing_values", "Context values that were missing (NaN/null)")
        self.context_length = per_domain(Histogram, "input_context_length", "Context points per series", LENGTH_BUCKETS)
        # one histogram per drift feature, on the monitor's buckets
        self.features = {
            f: Histogram(
                FEATURE_METRICS[f], f"Per-series {FEATURE_DOCS[f]}", ["domain"], registry=r, buckets=BUCKETS[f]
            )
            for f in FEATURES
        }
        self.horizon = per_domain(Histogram, "horizon", "Requested horizon", COUNT_BUCKETS)
        self.model_info = Gauge(
            "tsfm_serve_model_info",
            "Served model version per domain (value 1)",
            ["domain", "model", "version", "family", "alias", "backbone_version"],
            registry=r,
        )
        self.reloads = Counter(
            "tsfm_serve_reloads",
            "Model swaps by domain and outcome (ok, failed, removed)",
            ["domain", "outcome"],
            registry=r,
        )
        self.backbones = Gauge("tsfm_serve_backbones_loaded", "Distinct backbone objects in memory", registry=r)
        self.validated_at = Gauge(
            "tsfm_serve_champion_validated_timestamp_seconds",
            "When the served champion last passed a validation (its promotion or a re-onboarding that kept it)",
            ["domain"],
            registry=r,
        )
        self.max_age = Gauge(
            "tsfm_serve_champion_max_age_seconds",
            "Configured age after which a champion not re-validated is stale (monitor.max_champion_age_days)",
            registry=r,
        )
        if max_champion_age_s:
            self.max_age.set(max_champion_age_s)
        self.checked_at = Gauge(
            "tsfm_monitor_checked_timestamp_seconds", "Last monitor check of the domain", ["domain"], registry=r
        )
        self.degraded = Gauge(
            "tsfm_monitor_degraded", "1 when the last monitor check found the domain degraded", ["domain"], registry=r
        )
        self.realized_ratio = Gauge(
            "tsfm_monitor_realized_ratio",
            "Realized accuracy / the model's validation figure at the last check (above 1: worse than promised)",
            ["domain", "metric"],
            registry=r,
        )
        self.vs_naive = Gauge(
            "tsfm_monitor_vs_naive",
            "Realized accuracy / seasonal naive's on the same points, "
            "forecast from the same history, at the last check that scored points (above 1: the "
            "served forecasts lose to the baseline)",
            ["domain", "metric"],
            registry=r,
        )
        self.coverage = Gauge(
            "tsfm_monitor_coverage",
            "Share of actuals inside the 10-90% interval at the last check (nominal 0.8)",
            ["domain"],
            registry=r,
        )
        self.drift_psi = Gauge(
            "tsfm_monitor_drift_psi",
            "Population stability index of a per-series feature, new "
            "data (data=store) or served contexts (data=serving) vs the champion's training data",
            ["domain", "data", "feature"],
            registry=r,
        )
        self.drift_threshold = Gauge(
            "tsfm_monitor_drift_threshold", "PSI above which a feature counts as drifted", ["domain"], registry=r
        )

    def observe_inputs(self, domain: str, values: list[np.ndarray], horizon: int, season: int = 1) -> None:
        """Per-series input statistics of one request (values: context arrays, NaN = missing)."""
        self.horizon.labels(domain).observe(horizon)
        self.series.labels(domain).inc(len(values))
        n_values = sum(len(v) for v in values)
        n_missing = int(sum(np.isnan(v).sum() for v in values))
        for v in values:
            self.context_length.labels(domain).observe(len(v))
        # features of every series in one vectorised pass (a 1,000-series request costs milliseconds)
        for f, column in features_of([v[-FEATURE_WINDOW:] for v in values if len(v)], season).items():
            hist = self.features[f].labels(domain)
            for x in column[np.isfinite(column)]:
                hist.observe(float(x))
        self.values.labels(domain).inc(n_values)
        self.missing.labels(domain).inc(n_missing)

    def set_models(self, models: dict, backbones: int) -> None:
        """Re-export the served versions (after every swap)."""
        self.model_info.clear()
        for domain, m in models.items():
            self.model_info.labels(domain, m.name, m.version, m.family, m.alias, m.backbone_version or "").set(1)
            for hist in self.features.values():  # exported at 0 from the start: increase() then counts
                hist.labels(domain)  # the first contexts too (a new series' first sample is not)
        self.backbones.set(backbones)

    def set_domain_tags(self, tags: dict[str, dict[str, str]]) -> None:
        """Re-export the registry's per-domain facts (domain -> tags of forecaster-<domain>, plus
        ``validated_at`` of the served champion) after every alias poll."""
        for g in (
            self.validated_at,
            self.checked_at,
            self.degraded,
            self.realized_ratio,
            self.vs_naive,
            self.coverage,
            self.drift_psi,
            self.drift_threshold,
        ):
            g.clear()
        for domain, t in tags.items():

            def num(key: str) -> float | None:
                try:
                    return float(t[key])
                except (KeyError, TypeError, ValueError):
                    return None

            for key, gauge in (
                ("validated_at", self.validated_at),
                ("monitor.checked_at", self.checked_at),
                ("monitor.degraded", self.degraded),
                ("monitor.coverage", self.coverage),
                ("monitor.psi_threshold", self.drift_threshold),
            ):
                if (x := num(key)) is not None:
                    gauge.labels(domain).set(x)
            for key in t:
                if key.startswith("monitor.ratio.") and (x := num(key)) is not None:
                    self.realized_ratio.labels(domain, key.removeprefix("monitor.ratio.")).set(x)
                elif key.startswith("monitor.vs_naive.") and (x := num(key)) is not None:
                    self.vs_naive.labels(domain, key.removeprefix("monitor.vs_naive.")).set(x)
                elif key.startswith("monitor.psi.") and key.count(".") == 3 and (x := num(key)) is not None:
                    _, _, data, feature = key.split(".")
                    self.drift_psi.labels(domain, data, feature).set(x)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
