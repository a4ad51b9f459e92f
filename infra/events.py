"""The Prefect events tsfm emits, in one place (deployment triggers match on them).

- ``tsfm.source.updated`` (resource ``tsfm.source.<domain>``): new data at a watched source
  (``store/watch.py``); re-onboarding's trigger.
- ``tsfm.store.updated`` (resource ``tsfm.store.<domain>``): a re-ingest changed the domain's store;
  the monitor's trigger (new actuals to score).
- ``tsfm.domain.degraded`` (resource ``tsfm.domain.<domain>``): the monitor found realized accuracy
  worse than promised or drifted data; re-onboarding's trigger too.
"""

from __future__ import annotations

SOURCE_UPDATED = "tsfm.source.updated"
STORE_UPDATED = "tsfm.store.updated"
DOMAIN_DEGRADED = "tsfm.domain.degraded"


def source_resource(domain: str) -> str:
    return f"tsfm.source.{domain}"


def store_resource(domain: str) -> str:
    return f"tsfm.store.{domain}"


def domain_resource(domain: str) -> str:
    return f"tsfm.domain.{domain}"


def emit(event: str, resource_id: str, domain: str, payload: dict) -> str | None:
    """Emit one event; its id, or None where no Prefect API takes events (then nothing reacts)."""
    from prefect.events import emit_event

    sent = emit_event(
        event=event,
        payload=payload,
        resource={"prefect.resource.id": resource_id, "prefect.resource.name": domain, "tsfm.domain": domain},
    )
    return str(sent.id) if sent is not None else None
