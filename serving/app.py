"""FastAPI app: the MLflow scoring protocol for every served domain, plus /health, /metrics, /reload.

Endpoints:
- ``POST /invocations``: ``{"dataframe_split"|"dataframe_records": ..., "params": {"horizon": H,
  "domain": d}}`` -> ``{"predictions": [...]}`` like ``mlflow models serve``; header
  ``X-Tsfm-Model: forecaster-<d>/<version> (<family>)`` names what answered. ``domain`` may be
  left out when one domain is served.
- ``GET /ping`` (200 once a model is loaded, as MLflow's), ``GET /health`` (served versions),
  ``GET /metrics`` (Prometheus), ``POST /reload`` (check the aliases now).
With a token set, /invocations, /reload and /metrics want ``Authorization: Bearer <token>``;
/ping and /health stay open for probes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from infra.settings import ServeParams
from models.forecasting.kinds import NEURAL
from models.forecasting.protocol import (
    answer_json,
    floor_at_zero,
    forecast_frame,
    from_model_scale,
    on_grid_with_futures,
    parse_context,
    parse_horizon,
    parse_json,
    parse_rows,
    request_frame,
    request_rows,
    to_model_scale,
)
from models.forecasting.tiny import FALLBACK, MIN_NEURAL_CONTEXT, short_rows
from serving import MODEL_HEADER
from serving.batching import MicroBatcher
from serving.bulk import OFFLOAD_BYTES, Decoder, InvalidBody
from serving.catalog import Catalog, Poller, ServedModel
from serving.metrics import UNKNOWN, ServingMetrics

log = logging.getLogger("tsfm.serving")
INLINE_ROWS = 2000  # context rows a request may have to be parsed and answered on the event loop itself
INLINE_BYTES = 256 * 1024  # a bigger body is decoded in a thread: the event loop keeps serving the others
TOO_LARGE = "a number in the body is too large for a float64 (y) or a time step (ds)"
CLIENT_CLOSED = 499  # the status label of a request whose client disconnected (nginx's convention)


class ApiError(Exception):
    """An answer other than 200, MLflow-shaped: {"error_code": ..., "message": ...}."""

    CODES = {
        400: "INVALID_PARAMETER_VALUE",
        401: "UNAUTHENTICATED",
        404: "RESOURCE_DOES_NOT_EXIST",
        408: "REQUEST_TIMEOUT",
        413: "REQUEST_LIMIT_EXCEEDED",
        422: "INVALID_PARAMETER_VALUE",
        503: "TEMPORARILY_UNAVAILABLE",
    }

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        body = {"error_code": self.CODES.get(self.status, "INTERNAL_ERROR"), "message": self.message, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=headers)


@dataclass
class Served:
    """What the routes share: the models, the batcher, the metrics and the limits."""

    catalog: Catalog
    batcher: MicroBatcher
    metrics: ServingMetrics
    token: str | None
    max_bytes: int
    body_timeout_s: float = 30.0
    max_series: int = 5000  # series per request
    drift_per_minute: int = 60  # answered requests per client and minute that enter the drift statistics
    _drift_counts: dict = field(default_factory=dict)  # client -> (minute, requests counted)
    decoder: Decoder = field(default_factory=Decoder)  # big bodies: decoded in a helper process

    def counts_for_drift(self, client: str) -> bool:
        """Whether this client's answered request enters the drift statistics (at most
        ``drift_per_minute`` a minute per client): a test loop or a hostile client cannot move them."""
        minute = int(time.time() // 60)
        seen_minute, n = self._drift_counts.get(client, (minute, 0))
        n = n if seen_minute == minute else 0
        if len(self._drift_counts) > 10_000:  # forget old clients; memory stays bounded
            self._drift_counts = {c: v for c, v in self._drift_counts.items() if v[0] == minute}
        self._drift_counts[client] = (minute, n + 1)
        return n < self.drift_per_minute


def authorize(served: Served, request: Request) -> None:
    if served.token is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), served.token.encode()):
        raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")


async def read_body(served: Served, request: Request) -> bytes:
    """The whole body, within ``max_bytes`` and ``body_timeout_s`` (a stalled upload gets 408)."""
    try:
        return await asyncio.wait_for(_read_body(served, request), timeout=served.body_timeout_s)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {served.body_timeout_s:g} s") from None


async def _read_body(served: Served, request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > served.max_bytes:
        raise ApiError(413, f"request body of {int(declared)} bytes exceeds the limit of {served.max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():  # the cap holds for chunked bodies too
        size += len(chunk)
        if size > served.max_bytes:
            raise ApiError(413, f"request body exceeds the limit of {served.max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def pick_model(catalog: Catalog, params: dict) -> ServedModel:
    served = catalog.snapshot()
    domain = params.get("domain")
    if domain is None:
        if len(served) == 1:
            return next(iter(served.values()))
        raise ApiError(
            400, f"params.domain is required when several domains are served: {sorted(served)}", domains=sorted(served)
        )
    model = served.get(str(domain))
    if model is None:
        raise ApiError(
            404, f"domain {domain!r} is not served here; served domains: {sorted(served)}", domains=sorted(served)
        )
    return model


async def score(served: Served, request: Request) -> Response:
    """``POST /invocations``: validate, batch with concurrent requests, answer; never raises."""
    started = time.perf_counter()
    domain, model = UNKNOWN, None
    served.batcher.incoming += 1  # on its way to the batcher: a forming batch may wait for it
    queued = False
    try:
        authorize(served, request)
        raw = await read_body(served, request)
        offloaded = None  # a big common body, parsed by the helper process (serving/bulk.py)
        if len(raw) > OFFLOAD_BYTES:
            try:
                offloaded = await served.decoder.parse(raw)
            except InvalidBody as e:
                raise ApiError(400, f"invalid request body: {e}") from None
            except ValueError as e:  # parse_rows' own, worded as below
                raise ApiError(400, str(e)) from None
            except OverflowError:
                raise ApiError(400, TOO_LARGE) from None
        try:  # strict JSON: no NaN/Infinity literals, bounded nesting; bad UTF-8 is a ValueError too
            if offloaded is not None:
                body, frame, rows, req_params = None, None, None, offloaded[0]
            else:
                body = parse_json(raw) if len(raw) <= INLINE_BYTES else await asyncio.to_thread(parse_json, raw)
                rows = request_rows(body)  # the common shape: parsed without pandas below
                frame, req_params = (None, body.get("params") or {}) if rows else request_frame(body)
            if not isinstance(req_params, dict):
                raise ValueError("'params' must be a JSON object")
        except ValueError as e:
            raise ApiError(400, f"invalid request body: {e}") from None
        if not served.catalog.snapshot():
            raise ApiError(503, "no model is loaded yet")
        model = pick_model(served.catalog, req_params)  # this request keeps this object to the end
        domain = model.domain
        try:
            horizon = parse_horizon(req_params.get("horizon", model.default_horizon), model.max_horizon)
            # a small request is faster handled inline than through a thread hop; a big one must not
            # hold the event loop
            small = rows is not None and len(rows[1]) <= INLINE_ROWS
            if offloaded is not None:
                parsed = offloaded[1]
            else:
                parsed = (parse_rows(*rows) if small else await asyncio.to_thread(parse_rows, *rows)) if rows else None
            if parsed is None:
                frame = frame if frame is not None else request_frame(body)[0]
                parsed = await asyncio.to_thread(parse_context, frame)
            ids, values, stamps = parsed
            if len(ids) > served.max_series:
                raise ApiError(
                    413,
                    f"{len(ids)} series in one request; the limit is {served.max_series} "
                    "(serve.max_request_series): split the request",
                )
            freq = model.meta.get("freq")
            values, futures = (
                on_grid_with_futures(ids, values, stamps, horizon, freq)
                if small and len(ids) <= 8
                else await asyncio.to_thread(on_grid_with_futures, ids, values, stamps, horizon, freq)
            )
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except OverflowError:  # an integer of hundreds of digits in y or ds: a client's mistake, not a crash
            raise ApiError(400, TOO_LARGE) from None
        scaled, factors = to_model_scale(values)  # float32 models, any float64 magnitude
        queued = True
        quantiles = await served.batcher.predict(model, ids, scaled, horizon, announced=True)
        try:
            quantiles = floor_at_zero(from_model_scale(quantiles, factors, ids), values)
        except ValueError as e:
            raise ApiError(422, str(e)) from None
        answer = (
            _answer(ids, futures, quantiles) if small else await asyncio.to_thread(_answer, ids, futures, quantiles)
        )
        # drift statistics count answered requests only, a bounded number per client and minute
        if served.counts_for_drift(client_of(request)):
            if small:
                served.metrics.observe_inputs(domain, values, horizon, model.season)
            else:  # per-series features of a big request must not hold the event loop
                await asyncio.to_thread(served.metrics.observe_inputs, domain, values, horizon, model.season)
        response = Response(answer, media_type="application/json", headers={MODEL_HEADER: answered_by(model, values)})
    except ApiError as e:
        response = e.response()
        if model is not None:
            response.headers[MODEL_HEADER] = model.label
    except ClientDisconnect:  # the client left mid-upload: nobody to answer, not a server error
        log.info("client disconnected before its request body was read")
        response = Response(status_code=CLIENT_CLOSED)
    except Exception as e:  # a bug or a failed forward pass: 500, logged
        log.exception("scoring request failed")
        response = JSONResponse(
            {"error_code": "INTERNAL_ERROR", "message": f"{type(e).__name__}: {e}"}, status_code=500
        )
    finally:
        if not queued:
            served.batcher.incoming -= 1
    served.metrics.requests.labels(domain, str(response.status_code)).inc()
    served.metrics.latency.labels(domain).observe(time.perf_counter() - started)
    return response


def create_app(
    params: ServeParams, tracking_uri: str, catalog: Catalog | None = None, max_champion_age_s: float | None = None
) -> FastAPI:
    """The serving app. ``catalog``: a prepared one (tests); default: resolve ``params`` in MLflow.
    ``max_champion_age_s``: exported for the stale-champion alert (``monitor.max_champion_age_days``)."""
    catalog = catalog or Catalog(tracking_uri, params.alias, params.domains, params.device)
    metrics = ServingMetrics(max_champion_age_s)
    served = Served(
        catalog,
        MicroBatcher(params.max_batch_series, params.max_wait_ms, metrics),
        metrics,
        params.token.get_secret_value() if params.token else None,
        int(params.max_body_mb * 1024 * 1024),
        params.body_timeout_s,
        params.max_request_series,
        params.drift_requests_per_minute,
    )

    def on_change(changes: list[dict]) -> None:
        for c in changes:
            outcome = "failed" if "error" in c else ("removed" if c["to"] is None else "ok")
            metrics.reloads.labels(c["domain"], outcome).inc()
        metrics.set_models(catalog.snapshot(), catalog.backbone_count())

    catalog.on_change = on_change
    catalog.on_tags = metrics.set_domain_tags
    metrics.set_models(catalog.snapshot(), catalog.backbone_count())  # a prepared catalog may be loaded
    poller = Poller(catalog, params.reload_interval_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        served.batcher.start()
        # the first load completes before the port opens (as MLflow's server); a domain that is
        # missing now is looked for again by the poller and by POST /reload
        await asyncio.to_thread(catalog.refresh)
        poller.start()
        try:
            yield
        finally:
            poller.stop()
            served.batcher.stop()
            served.decoder.stop()

    app = FastAPI(title="tsfm serving", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.catalog, app.state.metrics, app.state.batcher = catalog, metrics, served.batcher
    add_routes(app, served)
    return app


def add_routes(app: FastAPI, served: Served) -> None:
    catalog = served.catalog

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError):  # /metrics, /reload: a refused token
        return e.response()

    @app.post("/invocations")
    async def invocations(request: Request):
        return await score(served, request)

    @app.get("/ping")
    async def ping():
        ok = bool(catalog.snapshot())
        return Response("\n", status_code=200 if ok else 503, media_type="application/json")

    @app.get("/health")
    async def health():
        models = catalog.snapshot()
        body = {
            "status": "ok" if models else "loading",
            "alias": catalog.alias,
            "domains": {d: m.describe() for d, m in sorted(models.items())},
            "backbones_loaded": catalog.backbone_count(),
            "errors": dict(catalog.errors),
            "last_refresh": catalog.last_refresh,
        }
        return JSONResponse(body, status_code=200 if models else 503)

    @app.get("/metrics")
    async def prometheus(request: Request):
        authorize(served, request)
        data, content_type = served.metrics.render()
        return Response(data, media_type=content_type)

    @app.post("/reload")
    async def reload(request: Request):
        authorize(served, request)
        changes = await asyncio.to_thread(catalog.refresh)  # loads off the event loop
        return {
            "changes": changes,
            "domains": {d: m.version for d, m in sorted(catalog.snapshot().items())},
            "errors": dict(catalog.errors),
        }


def client_of(request: Request) -> str:
    """Who sent a request, for the drift rate limit: its bearer token when there is one, else its address."""
    token = request.headers.get("authorization", "")
    if token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return "addr:" + (request.client.host if request.client else "unknown")


def answered_by(model, values) -> str:
    """The ``X-Tsfm-Model`` header: the model's label, and the naive fallback where a neural family
    (or an ensemble holding one) was handed series too short for it (``models.forecasting.tiny``)."""
    kinds = getattr(model.forecaster, "kinds", {}).values() if model.family == "ensemble" else [model.family]
    if not any(k in NEURAL for k in kinds):
        return model.label
    short = int(short_rows(values).sum())
    return (
        f"{model.label}; {FALLBACK} for {short} series with fewer than {MIN_NEURAL_CONTEXT} points"
        if short
        else model.label
    )


def _answer(ids, futures, quantiles) -> bytes:
    """``{"predictions": [records]}`` as ``mlflow models serve`` writes it."""
    fast = answer_json(ids, futures, quantiles)
    if fast is not None:
        return fast
    frame = forecast_frame(ids, futures, quantiles)
    # strict JSON (RFC 8259): from_model_scale has already refused any non-finite forecast
    return json.dumps({"predictions": frame.to_dict(orient="records")}, allow_nan=False).encode()
