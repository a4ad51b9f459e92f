"""Prometheus metrics of one serving process (its own registry, not the global one).

Besides traffic (requests by domain and status, latency, batch sizes) it records what
the inputs look like per domain, so drift shows on a dashboard before it shows in the
errors: context length, per-series level (log10 |mean|) and scale (coefficient of
variation), and the share of missing values (``missing / values``).
"""
from __future__ import annotations

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

UNKNOWN = "unknown"  # label for requests that name no served domain (keeps label values bounded)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LENGTH_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
LEVEL_BUCKETS = tuple(float(x) for x in range(-3, 10))  # log10 |mean|
CV_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)

        def per_domain(kind, name: str, doc: str, buckets=None):
            extra = {"buckets": buckets} if buckets else {}
            return kind(f"tsfm_serve_{name}", doc, ["domain"], registry=r, **extra)

        self.requests = Counter("tsfm_serve_requests", "Scoring requests by domain and HTTP status",
                                ["domain", "code"], registry=r)
        self.latency = per_domain(Histogram, "request_seconds", "Scoring request latency (body read to answer)",
                                  LATENCY_BUCKETS)
        self.batch_requests = per_domain(Histogram, "batch_requests", "Requests answered by one forward pass",
                                         COUNT_BUCKETS)
        self.batch_series = per_domain(Histogram, "batch_series", "Series in one forward pass", COUNT_BUCKETS)
        self.forward_seconds = per_domain(Histogram, "forward_seconds", "Time of one batched forward pass",
                                          LATENCY_BUCKETS)
        self.series = per_domain(Counter, "input_series", "Series received")
        self.values = per_domain(Counter, "input_values", "Context values received (missing included)")
        self.missing = per_domain(Counter, "input_missing_values", "Context values that were missing (NaN/null)")
        self.context_length = per_domain(Histogram, "input_context_length", "Context points per series",
                                         LENGTH_BUCKETS)
        self.level = per_domain(Histogram, "input_level_log10", "Per-series level: log10 |mean of the context|",
                                LEVEL_BUCKETS)
        self.scale = per_domain(Histogram, "input_cv", "Per-series scale: std / |mean| of the context", CV_BUCKETS)
        self.horizon = per_domain(Histogram, "horizon", "Requested horizon", COUNT_BUCKETS)
        self.model_info = Gauge("tsfm_serve_model_info", "Served model version per domain (value 1)",
                                ["domain", "model", "version", "family", "alias", "backbone_version"], registry=r)
        self.reloads = Counter("tsfm_serve_reloads", "Model swaps by domain and outcome (ok, failed, removed)",
                               ["domain", "outcome"], registry=r)
        self.backbones = Gauge("tsfm_serve_backbones_loaded", "Distinct backbone objects in memory", registry=r)

    def observe_inputs(self, domain: str, values: list[np.ndarray], horizon: int) -> None:
        """Per-series input statistics of one request (values: context arrays, NaN = missing)."""
        self.horizon.labels(domain).observe(horizon)
        self.series.labels(domain).inc(len(values))
        n_values = n_missing = 0
        for v in values:
            known = v[~np.isnan(v)]
            n_values += len(v)
            n_missing += len(v) - len(known)
            self.context_length.labels(domain).observe(len(v))
            if len(known):
                mean = float(np.mean(known, dtype=np.float64))
                self.level.labels(domain).observe(np.log10(abs(mean)) if mean else LEVEL_BUCKETS[0])
                if mean:
                    self.scale.labels(domain).observe(float(np.std(known, dtype=np.float64)) / abs(mean))
        self.values.labels(domain).inc(n_values)
        self.missing.labels(domain).inc(n_missing)

    def set_models(self, models: dict, backbones: int) -> None:
        """Re-export the served versions (after every swap)."""
        self.model_info.clear()
        for domain, m in models.items():
            self.model_info.labels(domain, m.name, m.version, m.family, m.alias, m.backbone_version or "").set(1)
        self.backbones.set(backbones)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
