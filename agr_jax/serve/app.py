"""The ASGI app: `POST /v1/predict`, `GET /healthz`, `GET /metrics`, the page at `/`.

`/v1/predict` takes the image as the raw request body (any image content type) or as the
file part of a multipart form, and `?detect=NAME` (default: the server's; `none`: the image
is an aligned crop). The answer is `{"records": [...the Predictor record per face...],
"faces": n, "capped": ...}`. Every bad request gets a status and a reason, and the server
keeps serving:

    400  empty, not an image, corrupt, bad ?detect=    413  body over `max_bytes`
    408  body not received within `body_timeout_s`     503  the lane is full (Retry-After)
    504  not answered within `timeout_s`               500  the model failed (logged)

Work runs in lanes (`lanes.py`): crops and each detector's photos have their own decode
threads, micro-batcher and bound, so a crop never waits behind a phone photo. The service
compiles everything it can run before it reports ready (`warmup.py`).
More than `max_faces` faces: the first `max_faces` are returned and `capped` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from agr_jax.inference import images
from agr_jax.inference.predictor import DETECTORS, Predictor
from agr_jax.serve import warmup as warmup_lib
from agr_jax.serve.lanes import Busy, Lane
from agr_jax.serve.limits import DEFAULT as DEFAULT_LIMITS
from agr_jax.serve.limits import DEFAULT_DETECTOR, Limits
from agr_jax.serve.metrics import Metrics

logger = logging.getLogger(__name__)
PAGE = Path(__file__).resolve().parent / "static" / "index.html"
NOT_LOADED = "failed to load on this server (the reason is in the server log)"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


def run_batch(predictor: Predictor, detect: str,
              batch: Sequence[images.Loaded]) -> list[list[dict[str, Any]]]:
    """One predictor call for the images of many requests; records split back per image
    (each `Loaded` is its request's own: it is tagged with its index for the call)."""
    names = [x.name for x in batch]
    for k, x in enumerate(batch):
        x.name = str(k)
    per_image: list[list[dict[str, Any]]] = [[] for _ in batch]
    try:
        for record in predictor.predict_loaded(batch, detect):
            k = int(record["path"])
            per_image[k].append({**record, "path": names[k]})
    finally:
        for x, name in zip(batch, names, strict=True):
            x.name = name
            release = getattr(x, "release", None)
            if release is not None:  # the full-resolution pixels are not needed any more
                release()
    return per_image


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds `max_bytes` (header or stream)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"request body of {int(declared)} bytes is over the limit of "
                            f"{max_bytes} bytes")
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body over the limit of {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def image_bytes(request: Request, body: bytes, max_bytes: int) -> tuple[bytes, str]:
    """(image bytes, its name) from a raw body or a multipart form's first file."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return body, "upload"

    async def once() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, once(), max_files=4, max_fields=16,
                                     max_part_size=max_bytes).parse()
    except MultiPartException as e:
        raise ApiError(400, f"bad multipart form: {e.message}") from e
    files = [v for _, v in form.multi_items() if hasattr(v, "read")]
    if not files:
        raise ApiError(400, "multipart form without a file part (send the image as a file)")
    data = await files[0].read()
    await form.close()
    return data, files[0].filename or "upload"


class Service:
    """The predictor behind one lane per served detector (and one for crops), with limits,
    readiness and metrics. `detectors`: more detectors to serve beside `detect` (each is
    compiled at start-up; a ?detect= the server does not serve is refused). A name the
    predictor cannot build is logged and listed as unavailable (the entry point's parser
    already refuses unknown names)."""

    def __init__(self, predictor: Predictor, detect: str = DEFAULT_DETECTOR,
                 limits: Limits = DEFAULT_LIMITS, warmup: bool = True,
                 detectors: Sequence[str] = ()):
        self.predictor, self.detect, self.limits, self.warmup = predictor, detect, limits, warmup
        self.served = tuple(dict.fromkeys((detect, *detectors, "none")))
        self.metrics = Metrics()
        self.metrics.trace_counters["predictor"] = lambda: getattr(predictor, "traces", None)
        self.lanes: dict[str, Lane] = {}
        self.unavailable: dict[str, str] = {}  # detector -> a generic reason (details: log)
        self.checked: set[str] = {"none"}
        self.ready, self.warm_report = False, {}
        self.in_browser = False  # /model.onnx and /ort/ served (create_app)

    def _lane(self, name: str) -> Lane:
        lim = self.limits
        return Lane(name, lambda batch: run_batch(self.predictor, name, batch),
                    max_batch=lim.max_batch if name == "none" else lim.max_batch_photos,
                    max_wait_s=lim.max_wait_ms / 1e3, max_pending=lim.max_pending,
                    decode_threads=lim.decode_threads, timeout_s=lim.timeout_s,
                    workers=1 if name == "none" else lim.photo_workers,
                    on_batch=self.metrics.batch)

    def _check(self, name: str) -> None:
        """Builds the detector once (in a worker thread); a failure is logged and remembered."""
        try:
            detector = self.predictor.detector(name)
        except Exception:  # noqa: BLE001 - missing module, weights, opencv: keep serving
            logger.exception("detector %s failed to load", name)
            self.unavailable[name] = NOT_LOADED
        else:
            self.metrics.trace_counters[f"detector_{name}"] = (
                lambda: getattr(detector, "compiles", None))
        self.checked.add(name)

    async def lane_for(self, detect: str) -> Lane:
        if detect not in self.served and detect not in DETECTORS:
            raise ApiError(400, f"detect: expected one of {list(self.served)}, got {detect!r}")
        if detect not in self.served:
            raise ApiError(400, f"detect={detect!r} is not served here (served: "
                                f"{', '.join(self.served)}; `--detectors` adds more)")
        if detect not in self.checked:
            await run_in_threadpool(self._check, detect)
        if detect in self.unavailable:
            raise ApiError(400, f"detector {detect!r} is not available on this server "
                                f"({self.unavailable[detect]}); ?detect=none takes aligned "
                                "crops")
        return self.lanes[detect]

    def _warm(self) -> None:
        for name in self.served:
            if name not in self.checked:
                self._check(name)
        served = [n for n in self.served if n not in self.unavailable]
        self.warm_report = warmup_lib.warm(self.predictor, served)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        for name in self.served:
            lane = self.lanes[name] = self._lane(name)
            lane.start()
            self.metrics.pending.labels(name).set_function(lambda lane=lane: lane.pending)
        if self.warmup:  # compile everything before the first request, not during it
            await run_in_threadpool(self._warm)
        self.metrics.mark_ready()
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            for lane in self.lanes.values():
                await lane.stop()
            self.lanes.clear()

    async def answer(self, lane: Lane, data: bytes, name: str, detect: str) -> dict[str, Any]:
        try:  # a photo gets the detector's bounded working copy (cheap to decode)
            loaded = await lane.decode(lambda: self.predictor.load(data, 0, detect))
        except images.BadInput as e:
            raise ApiError(400, f"bad image: {e}") from e
        loaded.name = name
        width, height = loaded.source_size or loaded.size  # a crop: its size before resizing
        records = await lane.submit(loaded)
        faces = [r for r in records if r["box"] is not None]
        cap = self.limits.max_faces
        out: dict[str, Any] = {"records": records[:cap], "faces": min(len(faces), cap),
                               "image": {"width": int(width), "height": int(height)},
                               "detect": detect, "capped": None}
        if len(records) > cap:
            out["capped"] = f"found {len(faces)} faces; returned the first {cap} (max_faces={cap})"
        return out

    async def _body(self, request: Request) -> tuple[bytes, str]:
        lim = self.limits
        try:
            body = await asyncio.wait_for(read_body(request, lim.max_bytes), lim.body_timeout_s)
        except TimeoutError as e:
            raise ApiError(408, f"request body not received within {lim.body_timeout_s:g} s",
                           {"Connection": "close"}) from e
        data, name = await image_bytes(request, body, lim.max_bytes)
        if not data:
            raise ApiError(400, "empty body: send the image bytes (or a multipart file)")
        return data, name

    async def predict(self, request: Request) -> Response:
        start = time.perf_counter()
        status, faces = 200, 0
        try:
            detect = request.query_params.get("detect", self.detect)
            lane = await self.lane_for(detect)
            data, name = await self._body(request)
            try:
                with lane.admit():
                    out = await asyncio.wait_for(self.answer(lane, data, name, detect),
                                                 self.limits.timeout_s)
            except Busy as e:
                self.metrics.rejected.labels(e.lane, "full").inc()
                raise ApiError(503, str(e), {"Retry-After": str(e.retry_after)}) from e
            except TimeoutError as e:
                raise ApiError(504, f"no answer within the request timeout of "
                                    f"{self.limits.timeout_s:g} s (server busy)") from e
            faces = out["faces"]
            out["seconds"] = round(time.perf_counter() - start, 4)
            return JSONResponse(out)
        except ApiError as e:
            status = e.status
            return JSONResponse({"error": e.reason}, status_code=e.status, headers=e.headers)
        except ClientDisconnect:
            status = 499
            return Response(status_code=499)
        except Exception:  # noqa: BLE001 - log why, keep serving, leak nothing
            status = 500
            logger.exception("predict failed")
            return JSONResponse({"error": "prediction failed (internal error; the reason is "
                                          "in the server log)"}, status_code=500)
        finally:
            self.metrics.request(status, time.perf_counter() - start, faces)

    async def healthz(self, request: Request) -> Response:
        if not self.ready:
            return JSONResponse({"status": "starting", "ready": False}, status_code=503)
        b = self.predictor.bundle
        return JSONResponse({
            "status": "ok", "ready": True, "detect": self.detect,
            "detectors": [n for n in self.served if n not in self.unavailable],
            "unavailable": self.unavailable, "image_size": b.image_size,
            "model": {**{k: b.source.get(k) for k in ("config_name", "checkpoint", "step")},
                      "compute_dtype": getattr(self.predictor, "compute_dtype", None)},
            "gender_names": list(b.gender_names), "race_names": list(b.race_names),
            "limits": dataclasses.asdict(self.limits), "in_browser": self.in_browser,
            "warmup": self.warm_report,
            "compiles": {"after_ready": self.metrics.compiles_after_ready()},
            "lanes": {k: v.stats() for k, v in self.lanes.items()}})

    async def metrics_text(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def page(self, request: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html")


def create_app(predictor: Predictor, detect: str = DEFAULT_DETECTOR,
               limits: Limits = DEFAULT_LIMITS, warmup: bool = True,
               in_browser: tuple[str | Path, str | Path] | None = None,
               detectors: Sequence[str] = ()) -> Starlette:
    """`in_browser`: (onnxruntime-web folder, exported ONNX file) for the page's
    in-browser mode (`in_browser.py`); `detectors`: served beside `detect`."""
    service = Service(predictor, detect, limits, warmup, detectors)
    extra = []
    if in_browser is not None:
        from agr_jax.serve import in_browser as in_browser_lib

        extra = in_browser_lib.routes(*in_browser)
        service.in_browser = True
    app = Starlette(routes=[
        Route("/v1/predict", service.predict, methods=["POST"]),
        Route("/healthz", service.healthz), Route("/metrics", service.metrics_text),
        Route("/", service.page), *extra], lifespan=service.lifespan)
    app.state.service = service
    return app
