"""`tsfm` command line: each command runs the matching Prefect flow.

Options default to the settings schema (params.yaml / TSFM_* env / built-in
defaults), so the CLI, DVC and Prefect share one configuration.
"""
from __future__ import annotations

import json
import os
import time

import typer

from infra.quiet import quiet  # light: stdlib only

quiet()

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _settings():
    from infra.settings import load_settings

    return load_settings()


@app.callback()
def _runtime_env():
    # before any command imports prefect/boto3: the profile's Prefect API URL and S3 endpoint
    from infra.settings import ProfileError, apply_runtime_env

    try:
        apply_runtime_env(_settings())
    except ProfileError as e:
        _fail(str(e))


def _echo(result, out: str | None = None) -> None:
    """Print a flow's result; with ``out`` also write it as JSON (DVC metrics/outs)."""
    text = json.dumps(result, indent=2, default=str)
    if out:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with open(out, "w") as fh:
            fh.write(text + "\n")
    typer.echo(text)


OUT = typer.Option(None, "--out", help="also write the result as JSON to this file")
SET = typer.Option(None, "--set", help="any parameter of this command's settings section as KEY=VALUE "
                                       "(repeatable), e.g. --set max_steps=50")


def _params(model, base, sets, named, flags=None):
    """The command's parameters (``infra.params.build_params``); a bad value exits with its message."""
    from infra.params import ParamsError, build_params

    try:
        return build_params(model, base, sets, named, flags)
    except ParamsError as e:
        _fail(f"invalid parameters:\n{e}")


@app.command()
def ingest(
    source: str = typer.Option(..., help="path, s3://bucket/key, builtin:<name> or synthetic:kernelsynth?..."),
    domain: str = typer.Option(..., help="domain name: lowercase letters, digits, - and _"),
    horizon: int = typer.Option(None, help="points per series held out for test (and again for validation)"),
    min_train: int = typer.Option(None, help="minimum train points per series on top of 2 x horizon"),
    out: str = OUT,
):
    """Validate a source and write the domain's canonical Parquet store."""
    from infra.settings import IngestParams

    params = _params(IngestParams, {}, None, dict(source=source, domain=domain, horizon=horizon, min_train=min_train))
    from flows.ingest import ingest_flow  # after the checks: bad input fails before prefect is imported

    _echo(ingest_flow(params), out)


@app.command()
def pretrain(
    preset: str = typer.Option(None, help="backbone size preset (tiny, 4m, 22m, 313m, 1b, 2.5b)"),
    domain: list[str] = typer.Option(None, help="ingested domains to pre-train on (train parts only); repeatable"),
    max_steps: int = typer.Option(None), batch_size: int = typer.Option(None),
    devices: str = typer.Option(None), accelerator: str = typer.Option(None), strategy: str = typer.Option(None),
    set_: list[str] = SET,
    out: str = OUT,
):
    """Pre-train a backbone (own process; DDP-ready) and register it as `backbone`."""
    from infra.settings import PretrainParams

    params = _params(PretrainParams, _settings().pretrain, set_, dict(
        preset=preset, domains=domain or None, max_steps=max_steps, batch_size=batch_size, devices=devices,
        accelerator=accelerator, strategy=strategy), {"domains": "--domain"})
    from flows.pretrain import pretrain_flow

    _echo(pretrain_flow(params), out)


@app.command()
def onboard(
    domain: str = typer.Option(...),
    source: str = typer.Option(None, help="ingest this source first"),
    horizon: int = typer.Option(None, help="used where the source has no per-series horizons"),
    season_length: int = typer.Option(None, help="used where the source has no per-series seasons"),
    context_length: int = typer.Option(None, help="points of history the backbone and the datastore see"),
    finetune_steps: int = typer.Option(None, help="also fully fine-tune a copy of the backbone for comparison "
                                                  "(0 = skip); never what gets served"),
    set_: list[str] = typer.Option(None, "--set", help="any onboarding parameter as KEY=VALUE (repeatable; "
                                                       "sections with dots), e.g. --set teacher.k=10 "
                                                       "--set adapter.epochs=5"),
    backbone: str = typer.Option("models:/backbone@champion"),
    promote: bool = typer.Option(True, help="run the promotion gate afterwards"),
    out: str = OUT,
):
    """Teacher + memory adapter + fusion weight for one domain; register and gate."""
    from infra.settings import OnboardParams

    params = _params(OnboardParams, _settings().onboard, set_, {
        "domain": domain, "source": source, "horizon": horizon, "season_length": season_length,
        "context_length": context_length, "finetune.max_steps": finetune_steps},
        {"finetune.max_steps": "--finetune-steps"})
    from flows.onboard_domain import onboard_domain_flow

    _echo(onboard_domain_flow(params, backbone=backbone, promote=promote), out)


@app.command()
def promote(domain: str = typer.Option(...), version: str = typer.Option(None),
            margin: float = typer.Option(None, help="relative validation improvement required "
                                                    "(default: promote.margin in params.yaml)")):
    """Give forecaster-<domain>'s challenger the champion alias if it passes the gate."""
    from flows.promote import promote_flow

    _echo(promote_flow(domain, version, margin))


@app.command()
def rollback(domain: str = typer.Option(...), version: str = typer.Option(...)):
    """Point forecaster-<domain>@champion back at an earlier version."""
    from tasks.promote import rollback_domain

    _echo(rollback_domain(domain, version, _settings()))


@app.command()
def serve(
    domains: str = typer.Option(None, help="comma-separated domains; default: every forecaster-* model with the alias "
                                           "(new ones are picked up while running)"),
    port: int = typer.Option(None), host: str = typer.Option(None, help="default 127.0.0.1"),
    alias: str = typer.Option(None, help="default champion"),
    reload_interval_s: float = typer.Option(None, help="alias poll interval in seconds; 0 = only POST /reload"),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 ..."),
    mlflow: bool = typer.Option(False, "--mlflow", help="MLflow's scoring server for one --domain instead "
                                                        "(no reload, no batching; for comparison)"),
    domain: str = typer.Option(None, help="with --mlflow: the one domain served"),
):
    """Serve every domain's forecaster-<domain>@champion (any family) in one process (foreground): MLflow scoring
    protocol on /invocations, /health, /metrics, hot reload. Bearer token: TSFM_SERVE__TOKEN."""
    from infra.settings import ServeParams

    settings = _settings()
    cfg = _params(ServeParams, settings.serve, None, dict(
        domains=_csv(domains), domain=domain, port=port, host=host, alias=alias,
        reload_interval_s=reload_interval_s, device=device))
    if mlflow:
        from serving.launch import server_command, server_env

        cmd = server_command(cfg.domain, cfg.host, cfg.port, cfg.alias)
        typer.echo(f"serving models:/forecaster-{cfg.domain}@{cfg.alias} on http://{cfg.host}:{cfg.port}/invocations")
        os.execvpe(cmd[0], cmd, server_env(settings))
    from serving.server import run

    run(settings, cfg)  # prints the URL, then runs until interrupted


@app.command()
def deploy(dry_run: bool = typer.Option(False, "--dry-run", help="list the deployments and schedules, serve nothing")):
    """Serve tsfm's Prefect deployments here: scheduled ingest, retraining and re-onboarding, plus the
    on-demand `onboard_domain` (one-click onboarding form). Runs until interrupted."""
    from flows.deployments import build_deployments, describe

    deployments = build_deployments(_settings())
    if dry_run:
        _echo(describe(deployments))
        return
    from prefect import serve

    typer.echo(f"serving {len(deployments)} deployments (Ctrl-C to stop); schedules from the settings' `schedules`")
    serve(*deployments)


@app.command()
def watch(out: str = OUT):
    """Check every source once for new data; each changed domain gets a `tsfm.source.updated` event,
    which re-onboards it where `tsfm deploy` runs (the `watch-sources` deployment does this on a schedule)."""
    from flows.watch_sources import watch_sources_flow

    _echo(watch_sources_flow(), out)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value is not None else None


@app.command()
def evaluate(
    backbone: str = typer.Option(None, help="registered backbone: models:/backbone@champion (default), "
                                            "models:/<name>/<version> or a version number"),
    datasets: str = typer.Option(None, help="comma-separated: m3, m3-<category>[-<frequency>], vic_elec, epf_fr_be"),
    max_series: int = typer.Option(None, help="evenly spaced subsample of at most N series per dataset"),
    windows: int = typer.Option(None, help="rolling test windows per electricity series (the last is the test part)"),
    baselines: str = typer.Option(None, help="comma-separated subset of seasonal_naive,theta,auto_ets"),
    context_length: int = typer.Option(None, help="default: the backbone's training context"),
    n_jobs: int = typer.Option(None, help="processes for the baselines; 0 = all cores"),
    device: str = typer.Option(None, help="backbone device: auto, cpu, cuda"),
    set_: list[str] = SET,
    out: str = OUT,
):
    """Zero-shot evaluation of a registered backbone on M3 and electricity data against
    seasonal naive, Theta and AutoETS; logged to MLflow, headline numbers tagged on the version."""
    from infra.settings import EvaluateParams

    params = _params(EvaluateParams, _settings().evaluate, set_, dict(
        backbone=backbone, datasets=_csv(datasets), max_series=max_series, windows=windows,
        baselines=_csv(baselines), context_length=context_length, n_jobs=n_jobs, device=device))
    from evaluation.zero_shot import check_datasets

    try:
        check_datasets(params.datasets)  # before any flow starts
        from flows.evaluate import evaluate_flow

        result = evaluate_flow(params)
    except (LookupError, ValueError) as e:
        _fail(str(e))
    with open(result["markdown_file"]) as fh:
        typer.echo(fh.read(), err=True)  # the table for people; stdout stays JSON
    _echo(result, out)


@app.command()
def demo():
    """Everything end to end on the embedded defaults: ingest, pretrain, onboard, promote, serve."""
    import resource

    from flows.demo import demo_flow

    started = time.perf_counter()
    demo_flow(_settings().demo)
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    typer.echo(f"demo finished in {time.perf_counter() - started:.0f}s; peak RSS of one process {peak:.0f} MiB")


if __name__ == "__main__":
    app()
