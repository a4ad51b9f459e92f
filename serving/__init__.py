"""tsfm's serving process: every domain's champion behind one MLflow-compatible endpoint.

One backbone in memory per backbone version, one adapter per domain, dynamic
micro-batching, request validation, an optional bearer token, /health and Prometheus
/metrics, and hot reload when an alias moves. Imports mlflow, never prefect.
"""

MODEL_HEADER = "X-Tsfm-Model"  # response header naming what answered: forecaster-<domain>/<version> (<family>)
