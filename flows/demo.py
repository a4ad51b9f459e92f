from prefect import flow

from flows.ingest import ingest_flow
from flows.onboard_domain import onboard_domain_flow
from flows.pretrain import pretrain_flow
from infra.settings import DEFAULT_BACKBONE, DemoParams, IngestParams, PretrainParams, load_settings
from tasks.demo import print_demo_report_task, serve_and_request_task


def demo_pretrain(pretrain: PretrainParams, params: DemoParams) -> PretrainParams | None:
    """The shipped backbone continued for a few steps on the demo's own train parts (its shape, a low
    learning rate); None: onboard the shipped one as it is (``continue_steps`` 0). The settings'
    pre-training from scratch when this checkout ships no backbone."""
    from models.backbone.io import shipped_backbone

    if shipped_backbone() is None:
        return pretrain
    if params.continue_steps == 0:
        return None
    return pretrain.model_copy(
        update={
            "init": "default",
            "max_steps": params.continue_steps,
            "lr": params.continue_lr,
            "warmup_steps": min(pretrain.warmup_steps, params.continue_steps // 4),
        }
    )


@flow(name="demo", log_prints=True)
def demo_flow(params: DemoParams = DemoParams()) -> dict:
    """ingest sources -> pretrain -> onboard one domain -> promote -> serve one request -> test table."""
    settings = load_settings()
    if params.domain not in settings.sources:
        raise ValueError(f"demo domain {params.domain!r} is not among the sources {sorted(settings.sources)}")
    stores = {
        domain: ingest_flow(IngestParams(domain=domain, **spec.model_dump()))
        for domain, spec in settings.sources.items()
    }
    plan = demo_pretrain(settings.pretrain, params)
    backbone = pretrain_flow(plan) if plan is not None else DEFAULT_BACKBONE  # the shipped one
    horizon = settings.sources[params.domain].horizon
    onboard = settings.onboard.model_copy(
        update={"domain": params.domain, "source": None, "horizon": horizon, "season_length": params.season_length}
    )
    onboarded = onboard_domain_flow(onboard, backbone=backbone)
    # Serve the champion; when the gate refused promotion, serve the challenger
    # instead (the report says why it was not promoted).
    alias = "champion" if onboarded["promotion"]["promoted"] else "challenger"
    served = serve_and_request_task(params.domain, stores[params.domain], horizon, settings, params.port, alias=alias)
    print_demo_report_task(onboarded, served)
    return {"backbone": backbone, "onboarded": onboarded, "served": served}
