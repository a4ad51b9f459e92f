"""`tsfm` command line: each command runs the matching Prefect flow.

Options left out take the settings' values (params.yaml, then TSFM_* variables, over the
built-in defaults): the value shown as [default: ...] is the one that applies here and now.
A mistake (a bad file, an unknown domain, a bad value) is one message and exit status 2;
`--debug` anywhere on the line shows its traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time

import typer

from infra.quiet import quiet  # light: stdlib only
from infra.settings import DEFAULT_BACKBONE

quiet()

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None, pretty_exceptions_enable=False
)


def _settings():
    from infra.settings import load_settings

    return load_settings()


def _shown():
    """The settings the help shows as defaults; the schema's own when the settings do not load
    (a broken params.yaml is reported when a command runs, not by --help)."""
    try:
        return _settings()
    except Exception:  # noqa: BLE001 - help must always print
        from infra.settings import Settings

        return Settings.model_construct()


S = _shown()


def _help(model: str | type, field: str) -> str:
    """An option's help from the settings schema's field description, written once there (``model``: a
    class of ``infra.settings`` by name, or the class itself)."""
    import infra.settings

    cls = getattr(infra.settings, model) if isinstance(model, str) else model
    return cls.model_fields[field].description or ""


def _described(section: str, field: str, shown=None, extra: str = "") -> str:
    """An option's help written once, in the schema: the description of the settings' ``section.field``
    (dots for nested sections), then ``extra``, then the value that applies (``shown`` where the raw
    value, often None, would say less)."""
    obj = getattr(S, section)
    *parents, leaf = field.split(".")
    for name in parents:
        obj = getattr(obj, name)
    return _help(type(obj), leaf) + extra + _default(getattr(obj, leaf) if shown is None else shown)


def _default(value) -> str:
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value)) or "[]"
    return f"  [default: {value}]"


@app.callback()
def _runtime_env(
    debug: bool = typer.Option(
        False, "--debug", help="show the traceback of an error (also TSFM_DEBUG=1); anywhere on the line"
    ),
):
    # before any command imports prefect/boto3: the profile's Prefect API URL, S3 endpoint, Prefect home
    from infra.settings import ProfileError, apply_runtime_env

    try:
        settings = _settings()
        apply_runtime_env(settings)
    except ProfileError as e:
        _fail(str(e))
    if os.environ.get("DVC_STAGE"):  # run by `dvc repro`: its ${tsfm...} values must be the settings'
        from store import dvc_params

        why = dvc_params.stale(settings, dvc_params.path())
        if why:
            _fail(why)


def _echo(result, out: str | None = None) -> None:
    """Print a flow's result; with ``out`` also write it as JSON (DVC metrics/outs)."""
    text = json.dumps(result, indent=2, default=str)
    if out:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with open(out, "w") as fh:
            fh.write(text + "\n")
    typer.echo(text)


def _say(text: str) -> None:
    """For people: stderr, so stdout stays the JSON result."""
    typer.echo(text, err=True)


def _prefect_home() -> None:
    """Before Prefect is imported (it reads its settings then): its home, which Prefect creates but
    not the folders above it, and the project's Prefect API, started once and reused by later commands."""
    if os.environ.get("PREFECT_HOME"):
        os.makedirs(os.environ["PREFECT_HOME"], exist_ok=True)
    from infra.project_api import ensure

    ensure(_settings().paths.state_dir, _say)


def _flow(path: str):
    """Import a flow (``flows.ingest.ingest_flow``) once Prefect's home and API are set (``_prefect_home``)."""
    import importlib

    _prefect_home()
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _run(flow, *args, **kwargs):
    """Run a flow with user errors kept to their message on the console (``infra.errors``)."""
    from infra.errors import hide_user_error_tracebacks
    from infra.servers import ephemeral_prefect_dies_with_us

    if not os.environ.get("TSFM_DEBUG"):
        hide_user_error_tracebacks()
    ephemeral_prefect_dies_with_us()  # a SIGKILLed tsfm leaves no temporary Prefect server behind
    return flow(*args, **kwargs)


OUT = typer.Option(None, "--out", help="also write the result as JSON to this file")
SET = typer.Option(
    None,
    "--set",
    help="any parameter of this command's settings section as KEY=VALUE (repeatable), e.g. --set max_steps=50",
)


def _params(model, base, sets, named, flags=None):
    """The command's parameters (``infra.params.build_params``); a bad value exits with its message."""
    from infra.params import ParamsError, build_params

    try:
        return build_params(model, base, sets, named, flags)
    except ParamsError as e:
        _fail("invalid parameters: " + "; ".join(line for line in str(e).splitlines() if line.strip()))


def _columns(value: str | None) -> dict[str, str] | None:
    """``date=ds,value=y`` -> {"date": "ds", "value": "y"}."""
    if not value:
        return None
    pairs = [p.strip() for p in value.split(",") if p.strip()]
    bad = [p for p in pairs if p.count("=") != 1 or not all(p.split("="))]
    if bad:
        _fail(f"--columns takes SOURCE=NAME pairs such as date=ds,value=y,series=unique_id; got {bad}")
    return dict(p.split("=") for p in pairs)


@app.command()
def ingest(
    source: str = typer.Option(
        ..., help="CSV/Parquet file or folder, s3://bucket/key, builtin:<name> or synthetic:kernelsynth?..."
    ),
    domain: str = typer.Option(..., help="domain name: lowercase letters, digits, - and _"),
    horizon: int = typer.Option(
        None,
        help="points per series held out for test and for each validation window"
        + _default(f"the domain's `sources` entry, else {S.onboard.horizon}"),
    ),
    min_train: int = typer.Option(None, help="minimum train points per series on top of 2 x horizon" + _default(8)),
    columns: str = typer.Option(
        None, help="the file's names for unique_id, ds and y where they differ, e.g. date=ds,value=y,series=unique_id"
    ),
    date_format: str = typer.Option(None, help=_help("IngestParams", "date_format")),
    out: str = OUT,
):
    """Validate a source and write the domain's canonical Parquet store; bad rows go to a quarantine file."""
    from infra.settings import IngestParams

    params = _params(
        IngestParams,
        {},
        None,
        dict(
            source=source,
            domain=domain,
            horizon=horizon,
            min_train=min_train,
            columns=_columns(columns),
            date_format=date_format,
        ),
    )
    from store.sources import check_header

    check_header(params.source, params.columns)  # a wrong file fails here, before any flow starts
    ingest_flow = _flow("flows.ingest.ingest_flow")  # after the checks: bad input fails before prefect loads
    from reports.summary import ingest_summary

    store = _run(ingest_flow, params)
    _say(ingest_summary(store))
    _echo(store, out)


@app.command()
def pretrain(
    preset: str = typer.Option(None, help=_described("pretrain", "preset")),
    domain: list[str] = typer.Option(
        None,
        help=_described(
            "pretrain", "domains", extra="; declared sources not ingested yet are ingested first; repeatable"
        ),
    ),
    max_steps: int = typer.Option(None, help=_described("pretrain", "max_steps")),
    batch_size: int = typer.Option(None, help=_described("pretrain", "batch_size")),
    devices: str = typer.Option(None, help=_described("pretrain", "devices", extra=" (per node)")),
    accelerator: str = typer.Option(None, help="cpu, gpu or auto" + _default(S.pretrain.accelerator)),
    strategy: str = typer.Option(None, help=_described("pretrain", "strategy")),
    init: str = typer.Option(None, help=_described("pretrain", "init", S.pretrain.init or "none: random weights")),
    set_: list[str] = SET,
    out: str = OUT,
):
    """Pre-train a backbone (own process; DDP-ready), register it as `backbone`, and make it champion if
    it beats the current one on the same validation windows."""
    from infra.settings import PretrainParams

    params = _params(
        PretrainParams,
        _settings().pretrain,
        set_,
        dict(
            preset=preset,
            domains=domain or None,
            max_steps=max_steps,
            batch_size=batch_size,
            devices=devices,
            accelerator=accelerator,
            strategy=strategy,
            init=init,
        ),
        {"domains": "--domain"},
    )
    from tracking.known_sources import missing_ingests

    missing_ingests(params.domains, _settings())  # undeclared, never-ingested domains fail here
    _echo(_run(_flow("flows.pretrain.pretrain_flow"), params), out)


@app.command()
def onboard(
    domain: str = typer.Option(..., help="the domain: its store is used, or --source ingested first"),
    source: str = typer.Option(None, help="ingest this source first (as `tsfm ingest` does)"),
    horizon: int = typer.Option(
        None, help=_described("onboard", "horizon", f"the domain's `sources` entry, else {S.onboard.horizon}")
    ),
    columns: str = typer.Option(
        None, help="with --source: the file's names for unique_id, ds and y, e.g. date=ds,value=y,series=unique_id"
    ),
    date_format: str = typer.Option(None, help="with --source: " + _help("IngestParams", "date_format")),
    season_length: int = typer.Option(
        None, help=_described("onboard", "season_length", S.onboard.season_length or "from the data")
    ),
    val_origins: int = typer.Option(
        None, help=_described("onboard", "val_origins", S.onboard.val_origins or "by the domain's size, 3 to 30")
    ),
    context_length: int = typer.Option(None, help=_described("onboard", "context_length")),
    backbone_context: int = typer.Option(
        None,
        help=_described("onboard", "backbone_context", S.onboard.backbone_context or "the backbone's training context"),
    ),
    finetune_steps: int = typer.Option(
        None,
        help=_described(
            "onboard",
            "finetune.max_steps",
            extra=" (a copy of the backbone fine-tuned in full, for comparison; never what gets served)",
        ),
    ),
    set_: list[str] = typer.Option(
        None,
        "--set",
        help="any onboarding parameter as KEY=VALUE (repeatable; "
        "sections with dots), e.g. --set teacher.k=10 "
        "--set adapter.epochs=5",
    ),
    backbone: str = typer.Option(
        DEFAULT_BACKBONE,
        help="the registered backbone to adapt; with this default and --set long_context_backbone=true, "
        "daily or finer data also try the shipped long-context backbone on validation",
    ),
    promote: bool = typer.Option(True, help="run the promotion gate afterwards"),
    out: str = OUT,
):
    """Onboard a domain: teacher, memory adapter and fusion weight on the frozen backbone; every candidate
    (fused, backbone, kNN teacher, seasonal naive, AutoETS, Theta, MSTL for daily, sub-daily and weekly
    data, and their weighted ensemble) scored on validation and test; the best validated one
    registered as forecaster-<domain>'s challenger and, past the gate, its champion."""
    from infra.settings import OnboardParams

    settings = _settings()  # read once for the whole command
    params = _params(
        OnboardParams,
        settings.onboard,
        set_,
        {
            "domain": domain,
            "source": source,
            "horizon": horizon,
            "columns": _columns(columns),
            "date_format": date_format,
            "season_length": season_length,
            "val_origins": val_origins,
            "context_length": context_length,
            "backbone_context": backbone_context,
            "finetune.max_steps": finetune_steps,
        },
        {"finetune.max_steps": "--finetune-steps"},
    )
    if horizon is None and not any(s.split("=", 1)[0].strip() == "horizon" for s in set_ or []):
        from store.horizon import default_horizon  # a declared domain's own horizon, as its deployment uses

        params = params.model_copy(update={"horizon": default_horizon(params.domain, settings)})
    if params.source:
        from store.sources import check_header

        check_header(params.source, params.columns)
    else:
        if params.columns or params.date_format:
            _fail("--columns and --date-format say how to read --source; without it the domain's store is used")
        from tracking.known_sources import missing_ingests

        missing_ingests([params.domain], settings)  # an unknown domain fails here, listing the known ones
    onboard_domain_flow = _flow("flows.onboard_domain.onboard_domain_flow")
    from reports.summary import ingest_summary, onboarding_summary

    started = time.perf_counter()
    result = _run(onboard_domain_flow, params, backbone=backbone, promote=promote)
    result["wall_s"] = time.perf_counter() - started  # the profile's total (time by stage)
    if params.source:  # what the file gave: quarantined rows and dropped series are news too
        _say(ingest_summary(settings.store_dir(params.domain)))
    _say(onboarding_summary(result))
    _echo(result, out)


@app.command()
def promote(
    domain: str = typer.Option(..., help="the domain whose challenger is judged"),
    version: str = typer.Option(None, help="a version of forecaster-<domain> to judge instead of the challenger"),
    margin: float = typer.Option(None, help="relative validation improvement required" + _default(S.promote.margin)),
):
    """Give forecaster-<domain>'s challenger the champion alias if it passes the gate."""
    _echo(_run(_flow("flows.promote.promote_flow"), domain, version, margin))


@app.command()
def rollback(
    domain: str = typer.Option(..., help="the domain to roll back"),
    version: str = typer.Option(..., help="the version of forecaster-<domain> to serve again"),
):
    """Point forecaster-<domain>@champion back at an earlier version (of any family)."""
    from tracking.registry import rollback_domain

    _echo(rollback_domain(domain, version, _settings()))


@app.command()
def serve(
    domains: str = typer.Option(
        None,
        help="comma-separated domains; empty: every forecaster-* model with the alias "
        "(new ones are picked up while running)" + _default(S.serve.domains or "every domain"),
    ),
    port: int = typer.Option(None, help=_described("serve", "port")),
    host: str = typer.Option(None, help=_described("serve", "host", extra=" (TSFM_SERVE__TOKEN) or --insecure")),
    insecure: bool = typer.Option(None, "--insecure", help=_described("serve", "insecure")),
    alias: str = typer.Option(None, help=_described("serve", "alias")),
    reload_interval_s: float = typer.Option(None, help=_described("serve", "reload_interval_s", extra=" (seconds)")),
    device: str = typer.Option(None, help=_described("serve", "device")),
    mlflow: bool = typer.Option(
        False,
        "--mlflow",
        help="MLflow's scoring server for one --domain instead (no reload, no batching; for comparison)",
    ),
    domain: str = typer.Option(None, help=_described("serve", "domain")),
):
    """Serve every domain's forecaster-<domain>@champion (any family) in one process (foreground): MLflow scoring
    protocol on /invocations, /health, /metrics, hot reload. Bearer token: TSFM_SERVE__TOKEN."""
    from infra.settings import ServeParams

    settings = _settings()
    cfg = _params(
        ServeParams,
        settings.serve,
        None,
        dict(
            domains=_csv(domains),
            domain=domain,
            port=port,
            host=host,
            alias=alias,
            reload_interval_s=reload_interval_s,
            device=device,
            insecure=insecure,
        ),
    )
    if mlflow:
        from serving.catalog import check_served
        from serving.exposure import check_bind

        warning = check_bind(cfg.host, False, cfg.insecure)  # MLflow's scoring server has no token
        if warning:
            print(warning, file=sys.stderr, flush=True)
        from serving.launch import server_command, server_env

        check_served(settings.tracking_uri, [cfg.domain], cfg.alias)
        cmd = server_command(cfg.domain, cfg.host, cfg.port, cfg.alias)
        _say(f"serving models:/forecaster-{cfg.domain}@{cfg.alias} on http://{cfg.host}:{cfg.port}/invocations")
        os.execvpe(cmd[0], cmd, server_env(settings))
    from serving.server import run

    run(settings, cfg)  # checks the domains, prints the URL, then runs until interrupted


@app.command()
def ui(
    mlflow_port: int = typer.Option(5000, help="MLflow UI port"),
    prefect_port: int = typer.Option(4200, help="Prefect UI port"),
    host: str = typer.Option("127.0.0.1", help="bind address of both"),
    print_only: bool = typer.Option(False, "--print", help="print the two commands instead of running them"),
):
    """Open MLflow's and Prefect's UIs on this project's state (runs, models, flow runs, reports);
    runs until Ctrl-C."""
    from infra.ui import run_ui, ui_commands

    commands = ui_commands(_settings(), host, mlflow_port, prefect_port)
    if print_only:
        for c in commands:
            _say(c.shell())
        return
    run_ui(commands, _say)


@app.command()
def deploy(
    dry_run: bool = typer.Option(False, "--dry-run", help="list the deployments and schedules, serve nothing"),
    one_click: bool = typer.Option(
        False,
        "--one-click",
        help="serve only the on-demand onboarding form (`one-click-onboarding`): no schedule or trigger is switched on",
    ),
):
    """Serve tsfm's Prefect deployments here: scheduled ingest, retraining and re-onboarding of every declared
    and every onboarded domain, plus the on-demand `one-click-onboarding` form. Runs until interrupted."""
    build_deployments = _flow("flows.deployments.build_deployments")  # Prefect's home first
    from flows.deployments import describe, one_click_deployment

    settings = _settings()
    deployments = [one_click_deployment(settings)] if one_click else build_deployments(settings)
    if dry_run:
        _echo(describe(deployments))
        return
    from prefect import serve

    from infra.servers import ephemeral_prefect_dies_with_us

    ephemeral_prefect_dies_with_us()
    what = "the onboarding form only" if one_click else "schedules from the settings' `schedules`"
    _say(f"serving {len(deployments)} deployment(s) (Ctrl-C to stop); {what}")
    serve(*deployments, print_starting_message=False)


@app.command()
def watch(out: str = OUT):
    """Check every source once for new data; each changed domain gets a `tsfm.source.updated` event,
    which re-onboards it where `tsfm deploy` runs (the `watch-sources` deployment does this on a schedule)."""
    _echo(_run(_flow("flows.watch_sources.watch_sources_flow")), out)


def _fail(message: str) -> None:
    from infra.errors import EXIT_USER_ERROR

    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USER_ERROR)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value is not None else None


@app.command()
def evaluate(
    backbone: str = typer.Option(
        None,
        help="registered backbone: models:/backbone@champion, "
        "models:/<name>/<version> or a version number" + _default(S.evaluate.backbone),
    ),
    datasets: str = typer.Option(
        None,
        help="comma-separated: m3, m3-<category>[-<frequency>], vic_elec, epf_fr_be" + _default(S.evaluate.datasets),
    ),
    max_series: int = typer.Option(
        None, help="evenly spaced subsample of at most N series per dataset" + _default(S.evaluate.max_series)
    ),
    windows: int = typer.Option(None, help=_described("evaluate", "windows")),
    baselines: str = typer.Option(None, help=_described("evaluate", "baselines", extra="; comma-separated")),
    context_length: int = typer.Option(
        None, help=_described("evaluate", "context_length", S.evaluate.context_length or "the backbone's")
    ),
    n_jobs: int = typer.Option(None, help=_described("evaluate", "n_jobs")),
    device: str = typer.Option(None, help=_described("evaluate", "device")),
    set_: list[str] = SET,
    out: str = OUT,
):
    """Zero-shot evaluation of a registered backbone on M3 and electricity data against
    seasonal naive, Theta and AutoETS; logged to MLflow, headline numbers tagged on the version."""
    from infra.settings import EvaluateParams

    params = _params(
        EvaluateParams,
        _settings().evaluate,
        set_,
        dict(
            backbone=backbone,
            datasets=_csv(datasets),
            max_series=max_series,
            windows=windows,
            baselines=_csv(baselines),
            context_length=context_length,
            n_jobs=n_jobs,
            device=device,
        ),
    )
    from evaluation.zero_shot import check_datasets
    from infra.errors import InputError

    try:
        check_datasets(params.datasets)  # before any flow starts
    except ValueError as e:
        raise InputError(str(e)) from None
    result = _run(_flow("flows.evaluate.evaluate_flow"), params)
    with open(result["markdown_file"]) as fh:
        _say(fh.read())  # the table for people; stdout stays JSON
    _echo(result, out)


@app.command()
def forecast(
    domain: str = typer.Option(None, help=_described("forecast", "domain")),
    source: str = typer.Option(None, help=_described("forecast", "source", "none: the domain's store")),
    columns: str = typer.Option(
        None,
        help=_described("forecast", "columns", "the canonical names", extra=", e.g. date=ds,value=y,series=unique_id"),
    ),
    date_format: str = typer.Option(None, help=_help("ForecastParams", "date_format")),
    output: str = typer.Option(
        None, help=_described("forecast", "output", S.forecast.output or "<data_dir>/forecasts/<domain>")
    ),
    horizon: int = typer.Option(None, help=_described("forecast", "horizon", S.forecast.horizon or "the champion's")),
    origin: str = typer.Option(
        None,
        help="the batch's as-of date YYYY-MM-DD (its partition); default: today in "
        f"schedules.timezone ({S.schedules.timezone})",
    ),
    executor: str = typer.Option(None, help=_described("forecast", "executor")),
    workers: int = typer.Option(None, help=_described("forecast", "workers")),
    set_: list[str] = SET,
    out: str = OUT,
):
    """Batch forecasts: the domain's champion (any family) forecasts every series into one Parquet
    partition (origin=YYYY-MM-DD) under the output, replacing an earlier run of the same origin."""
    from infra.settings import ForecastParams

    params = _params(
        ForecastParams,
        _settings().forecast,
        set_,
        dict(
            domain=domain,
            source=source,
            columns=_columns(columns),
            date_format=date_format,
            output=output,
            horizon=horizon,
            origin=origin,
            executor=executor,
            workers=workers,
        ),
    )
    if params.source:
        from infra.errors import InputError
        from store.sources import check_header

        try:
            check_header(params.source, params.columns)  # a wrong file fails before any flow starts
        except ValueError as e:
            raise InputError(str(e)) from None
    if params.output:
        from batch.partitions import check_output

        check_output(params.output)  # an unwritable folder or a file fails before any flow starts
    result = _run(_flow("flows.forecast.forecast_flow"), params)
    _say(
        f"{result['series']} series of {result['domain']} forecast {result['horizon']} steps by "
        f"{result['model']} v{result['model_version']} ({result['family']}) in {result['seconds']:.1f}s "
        f"-> {result['output_uri']}"
        + (f"; {result['skipped']} series without a forecast (see _skipped.parquet)" if result["skipped"] else "")
    )
    _echo(result, out)


@app.command()
def monitor(
    domain: str = typer.Option(
        None, help=_described("monitor", "domain", S.monitor.domain or "every onboarded domain")
    ),
    forecasts: str = typer.Option(
        None,
        help=_described(
            "monitor", "forecasts", S.monitor.forecasts or S.forecast.output or "<data_dir>/forecasts/<domain>"
        ),
    ),
    serving_metrics: str = typer.Option(
        None, help=_described("monitor", "serving_metrics", "none", extra="; comma-separated")
    ),
    prometheus_url: str = typer.Option(None, help=_described("monitor", "prometheus_url", "none")),
    no_events: bool = typer.Option(False, "--no-events", help="report only: emit no tsfm.domain.degraded"),
    set_: list[str] = SET,
    out: str = OUT,
):
    """Realized accuracy of the stored batch forecasts that new actuals cover (each point once) against the
    models' validation figures, drift of the data and served contexts from the champion's training data,
    and tsfm.domain.degraded (re-onboarding) when either crosses its threshold."""
    from infra.settings import MonitorParams

    params = _params(
        MonitorParams,
        _settings().monitor,
        set_,
        dict(
            domain=domain,
            forecasts=forecasts,
            prometheus_url=prometheus_url,
            serving_metrics=[u.strip() for u in serving_metrics.split(",") if u.strip()] if serving_metrics else None,
            emit_events=False if no_events else None,
        ),
    )
    from tracking.registry import monitored_domains

    if not monitored_domains(params.domain, _settings()):  # an unknown domain fails here, before any flow starts
        _say("no onboarded domain to monitor (tsfm onboard --domain NAME --source PATH first)")
        _echo({}, out)
        return
    from evaluation.monitoring import check_serving_sources

    check_serving_sources(params, _settings())  # a URL that cannot be read fails here, not as "healthy"
    result = _run(_flow("flows.monitor.monitor_flow"), params)

    def fig(x) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    for name, v in sorted(result.items()):
        state = "DEGRADED" if v["degraded"] else "healthy"
        _say(
            f"{name}: {state}: {v['points']} forecast points scored ({', '.join(v['origins']) or 'no origin'}), "
            f"{v['waiting']} wait for actuals"
            + "".join(
                f"\n  v{r['model_version']} ({r['family']}): MASE {fig(r['MASE'])} (validation "
                f"{fig(r['val_MASE'])}, seasonal naive {fig(r['naive_MASE'])}), sCRPS {fig(r['sCRPS'])} "
                f"(validation {fig(r['val_sCRPS'])}, seasonal naive {fig(r['naive_sCRPS'])}), 10-90% coverage "
                f"{fig(r['coverage'])}"
                for r in v.get("realized", [])
            )
            + "".join(f"\n  - {r}" for r in v["reasons"])
            + (f"\n  {v['event'] and 'tsfm.domain.degraded emitted' or 'no event emitted'}" if v["degraded"] else "")
        )
    _echo(result, out)


@app.command()
def config(
    changed: bool = typer.Option(
        False, "--changed", help="only the settings whose value differs from the schema's default"
    ),
    as_json: bool = typer.Option(False, "--json", help="the rows as JSON (key, value, source, default)"),
    write_dvc: bool = typer.Option(
        False, "--write-dvc", help="write dvc.params.yaml (what dvc.yaml reads) from these settings, then exit"
    ),
    check_dvc: bool = typer.Option(
        False, "--check-dvc", help="exit 2 with a message when dvc.params.yaml does not match these settings"
    ),
):
    """The effective settings, each with where it came from: the schema's default, the profile (TSFM_PROFILE),
    params.yaml (TSFM_PARAMS) or a TSFM_* variable. A command's options and --set apply on top, to it alone."""
    if write_dvc or check_dvc:
        from store import dvc_params

        if write_dvc:
            _say(f"wrote {dvc_params.write(_settings(), dvc_params.path())}")
        elif why := dvc_params.stale(_settings(), dvc_params.path()):
            _fail(why)
        return
    from infra.provenance import effective_settings

    rows = [r for r in effective_settings() if not changed or r["value"] != r["default"]]
    if as_json:
        _echo(rows)
        return
    width = max((len(r["key"]) for r in rows), default=0)
    for r in rows:
        was = (
            ""
            if r["source"] == "default"
            else "; the default too"
            if r["value"] == r["default"]
            else f"; default {json.dumps(r['default'], default=str)}"
        )
        typer.echo(f"{r['key']:<{width}}  {json.dumps(r['value'], default=str)}  ({r['source']}{was})")


@app.command()
def demo():
    """Everything end to end on the embedded defaults: ingest, pretrain, onboard, promote, serve."""
    import resource

    demo_flow = _flow("flows.demo.demo_flow")
    started = time.perf_counter()
    _run(demo_flow, _settings().demo)
    peak = (
        max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        / 1024
    )
    _say(f"demo finished in {time.perf_counter() - started:.0f}s; peak RSS of one process {peak:.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    """The `tsfm` entry point: a user error is its message on stderr and exit status 2."""
    from infra.errors import EXIT_USER_ERROR, UserError

    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        args.remove("--debug")
        os.environ["TSFM_DEBUG"] = "1"
    try:
        app(args=args, prog_name="tsfm")
    except UserError as e:
        if os.environ.get("TSFM_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
