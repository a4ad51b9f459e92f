"""Scoring forecasts: statistical baselines (``baselines``), score tables (``scores``), one
onboarded domain's validation and test evaluation (``domain``), the zero-shot benchmark
windows (``zero_shot``) and the cross-domain comparison (``compare``)."""
