"""MLflow: experiments and the model registry (``registry``), logging a forecaster as a pyfunc
model (``model_logging``, ``pyfunc``), stores as dataset inputs with DVC's digest
(``datasets``) and retries of calls to remotes (``retries``)."""
