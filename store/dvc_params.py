"""What `dvc repro` reads, written from the settings: ``dvc.params.yaml``.

``params.yaml`` holds only what a project overrides; the schema (``infra/settings.py``) holds every
default. DVC cannot read a default from code, so ``tsfm config --write-dvc`` writes the effective
values the stages read (the sources with their horizons resolved by the one horizon rule, and the
``pretrain``, ``onboard`` and ``evaluate`` sections) under one key, ``tsfm``; ``dvc.yaml`` takes its
``${tsfm...}`` values and its tracked params from there. A copy that no longer matches the settings
is refused, not used: by ``tsfm config --check-dvc`` (the pipeline's ``settings`` stage, run by every
``dvc repro``) and by any tsfm command that ``dvc repro`` runs (``DVC_STAGE`` set)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from infra.settings import Settings
from store.horizon import default_horizon

FILE = "dvc.params.yaml"
SECTIONS = ("pretrain", "onboard", "evaluate")
HEADER = (
    "# Written by `tsfm config --write-dvc` from the schema's defaults and params.yaml: edit params.yaml,\n"
    "# then run that command again. dvc.yaml reads it (${tsfm...}); `dvc repro` refuses a stale copy.\n"
)


def path() -> Path:
    """The project's copy: at the root of the DVC repository when DVC runs the command, else here."""
    return Path(os.environ.get("DVC_ROOT", ".")) / FILE


def dvc_params(settings: Settings) -> dict[str, dict[str, object]]:
    """The values dvc.yaml reads, as plain YAML data."""
    data = settings.model_dump(mode="json")
    sources = {
        domain: {"source": spec.source, "horizon": default_horizon(domain, settings, spec), "min_train": spec.min_train}
        for domain, spec in settings.sources.items()
    }
    return {"tsfm": {"sources": sources, **{name: data[name] for name in SECTIONS}}}


def render(settings: Settings) -> str:
    return HEADER + yaml.safe_dump(dvc_params(settings), sort_keys=False)


def write(settings: Settings, path: Path) -> Path:
    path.write_text(render(settings))
    return path


def stale(settings: Settings, path: Path) -> str | None:
    """Why ``path`` cannot be used with these settings (missing, or other values), else None."""
    fix = "run `tsfm config --write-dvc`, then `dvc repro` again"
    if not path.is_file():
        return f"{path} is missing: {fix}"
    if yaml.safe_load(path.read_text()) != dvc_params(settings):
        return f"{path} does not match the settings (params.yaml or TSFM_* changed since it was written): {fix}"
    return None
