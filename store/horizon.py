"""The one rule for a domain's held-out horizon when a command names none."""

from __future__ import annotations

from infra.settings import IngestParams, Settings, SourceSpec


def default_horizon(domain: str, settings: Settings, spec: SourceSpec | None = None) -> int:
    """The held-out horizon of an ingest or onboarding that names none: the domain's source entry
    (``spec``: declared in `sources`, or remembered by the registry), else ``onboard.horizon``."""
    spec = spec or settings.sources.get(domain)
    return spec.horizon if spec is not None else settings.onboard.horizon


def ingest_params(params: IngestParams, settings: Settings) -> IngestParams:
    """``params`` with the settings' horizon where it has none."""
    if params.horizon is not None:
        return params
    return params.model_copy(update={"horizon": default_horizon(params.domain, settings)})
