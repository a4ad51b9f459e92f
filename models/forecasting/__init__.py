"""The forecasting runtime: what a registered model holds and runs.

Each forecaster (the backbone alone, backbone + memory adapter, backbone + kNN teacher)
saves itself as one folder and loads from it, and answers ``predict(contexts, horizon)``
with a ``QuantileForecast``. ``protocol`` turns the scoring protocol's rows into contexts
and forecasts back into rows. This package is what a registered MLflow model ships.
"""
