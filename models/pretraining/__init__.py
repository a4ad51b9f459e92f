"""Pre-training a backbone with Lightning: ``spec`` (the job, one pydantic model; flags
are generated from it), ``train`` (the entry point, ``python -m models.pretraining``),
``module`` (loss and optimiser), ``data`` (mixture of sources, resumable sampling),
``series_cache`` (memory-mapped sources), ``augment``/``synthetic`` (TSMixup, KernelSynth),
``optim`` and ``strategy`` (large-batch optimisers, DDP/FSDP)."""
