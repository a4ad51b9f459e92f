"""The backbone architecture, one concern per module: ``config`` (shape), ``presets`` (sizes),
``layers``, ``scaler`` (causal scaling), ``network`` (the model), ``decode`` (forecast
input and read-out) and ``io`` (save/load). Imported module by module: a light caller
(settings, argument checks) never pays for torch."""
