"""Plain PyTorch/Lightning, importable and testable alone: no prefect, mlflow, dvc or boto3.

Subpackages by concern: ``backbone`` (the architecture), ``pretraining`` (Lightning training
of a backbone), ``memory`` (TS-Memory adaptation of a frozen backbone to one domain) and
``forecasting`` (what a registered model runs). ``metrics``, ``splits`` and ``columns`` are
shared by all of them.
"""
