"""Data in: sources (``sources``), row validation and quarantine (``validate``), the canonical
store of a domain (``ingest`` writes it, ``canonical`` reads and splits it), the train-only
pre-training corpus (``corpus``) and new-data detection (``watch``)."""
