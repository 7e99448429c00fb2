"""The ASGI app: `POST /v1/predict`, `GET /healthz`, `GET /metrics`, the page at `/`.

`/v1/predict` takes the image as the raw request body (any image content type) or as the
file part of a multipart form, and `?detect=mtcnn|haar|none` (default: the server's). The
answer is `{"records": [...the Predictor record per face...], "faces": n, "capped": ...}`.
Every bad request gets a status and a reason, and the server keeps serving:

    413  body over `max_bytes`            400  empty, not an image, corrupt, bad ?detect=
    504  not answered within `timeout_s`  500  the model failed (the reason is given)

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

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from agr_jax.inference import images
from agr_jax.inference.predictor import DETECTORS, Predictor
from agr_jax.serve.batcher import MicroBatcher
from agr_jax.serve.limits import DEFAULT as DEFAULT_LIMITS
from agr_jax.serve.limits import Limits
from agr_jax.serve.metrics import Metrics

logger = logging.getLogger(__name__)
PAGE = Path(__file__).resolve().parent / "static" / "index.html"


class ApiError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def run_batch(predictor: Predictor, detect: str,
              batch: Sequence[images.Loaded]) -> list[list[dict[str, Any]]]:
    """One predictor call for the images of many requests; records split back per image."""
    names = [x.name for x in batch]
    tagged = [dataclasses.replace(x, name=str(k)) for k, x in enumerate(batch)]
    per_image: list[list[dict[str, Any]]] = [[] for _ in batch]
    for record in predictor.predict_loaded(tagged, detect):
        k = int(record["path"])
        per_image[k].append({**record, "path": names[k]})
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
    """The predictor behind one micro-batcher per detector, with limits and metrics."""

    def __init__(self, predictor: Predictor, detect: str = "mtcnn",
                 limits: Limits = DEFAULT_LIMITS, warmup: bool = True):
        if detect not in DETECTORS:
            raise ValueError(f"detect: expected one of {DETECTORS}, got {detect!r}")
        self.predictor, self.detect, self.limits, self.warmup = predictor, detect, limits, warmup
        self.metrics = Metrics()
        self.batchers: dict[str, MicroBatcher] = {}
        self.unavailable: dict[str, str] = {}  # detector -> why it cannot be built
        self.in_browser = False  # /model.onnx and /ort/ served (create_app)

    def batcher(self, detect: str) -> MicroBatcher:
        if detect not in self.batchers:
            batcher = MicroBatcher(
                lambda batch: run_batch(self.predictor, detect, batch),
                max_items=self.limits.max_batch, max_wait_s=self.limits.max_wait_ms / 1e3,
                on_batch=self.metrics.batch)
            batcher.start()
            self.batchers[detect] = batcher
        return self.batchers[detect]

    async def check_detector(self, detect: str) -> None:
        if detect == "none":
            return
        if detect not in self.unavailable:
            try:
                await run_in_threadpool(self.predictor.detector, detect)
                return
            except Exception as e:  # noqa: BLE001 - missing module, weights, opencv
                self.unavailable[detect] = f"{type(e).__name__}: {e}"
        raise ApiError(400, f"detector {detect!r} is not available on this server "
                            f"({self.unavailable[detect]}); ?detect=none takes aligned crops")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.warmup:  # compile every bucket before the first request, not during it
            size = self.predictor.bundle.image_size
            for bucket in self.predictor.buckets:
                await run_in_threadpool(self.predictor.predict_crops,
                                        np.zeros((bucket, size, size, 3), np.uint8))
            if self.detect != "none":  # the detector's webcam-sized shapes too, if it exists
                with contextlib.suppress(ApiError):
                    await self.check_detector(self.detect)
                    blank = images.Loaded("warm-up", np.zeros((480, 640, 3), np.uint8))
                    await run_in_threadpool(self.predictor.predict_loaded, [blank], self.detect)
        try:
            yield
        finally:
            for batcher in self.batchers.values():
                await batcher.stop()
                batcher.close()
            self.batchers.clear()

    async def answer(self, data: bytes, name: str, detect: str) -> dict[str, Any]:
        if not data:
            raise ApiError(400, "empty body: send the image bytes (or a multipart file)")
        await self.check_detector(detect)
        size = self.predictor.bundle.image_size
        try:
            loaded = await run_in_threadpool(
                (lambda: images.crop(data, size)) if detect == "none"
                else (lambda: images.load(data)))
        except images.BadInput as e:
            raise ApiError(400, f"bad image: {e}") from e
        loaded.name = name
        records = await self.batcher(detect).submit(loaded)
        faces = [r for r in records if r["box"] is not None]
        out: dict[str, Any] = {"records": records[:self.limits.max_faces],
                               "faces": min(len(faces), self.limits.max_faces),
                               "image": {"width": int(loaded.image.shape[1]),
                                         "height": int(loaded.image.shape[0])},
                               "detect": detect, "capped": None}
        if len(records) > self.limits.max_faces:
            out["capped"] = (f"found {len(faces)} faces; returned the first "
                             f"{self.limits.max_faces} (max_faces={self.limits.max_faces})")
        if detect == "none" and loaded.source_size:
            out["image"] = {"width": loaded.source_size[0], "height": loaded.source_size[1]}
        return out

    async def predict(self, request: Request) -> Response:
        start = time.perf_counter()
        status, faces = 200, 0
        try:
            detect = request.query_params.get("detect", self.detect)
            if detect not in DETECTORS:
                raise ApiError(400, f"detect: expected one of {list(DETECTORS)}, got {detect!r}")
            body = await read_body(request, self.limits.max_bytes)
            data, name = await image_bytes(request, body, self.limits.max_bytes)
            try:
                out = await asyncio.wait_for(self.answer(data, name, detect),
                                             self.limits.timeout_s)
            except TimeoutError as e:
                raise ApiError(504, f"no answer within the request timeout of "
                                    f"{self.limits.timeout_s:g} s (server busy)") from e
            faces = out["faces"]
            out["seconds"] = round(time.perf_counter() - start, 4)
            return JSONResponse(out)
        except ApiError as e:
            status = e.status
            return JSONResponse({"error": e.reason}, status_code=e.status)
        except ClientDisconnect:
            status = 499
            return Response(status_code=499)
        except Exception as e:  # noqa: BLE001 - say why, keep serving
            status = 500
            logger.exception("predict failed")
            return JSONResponse({"error": f"prediction failed: {type(e).__name__}: {e}"},
                                status_code=500)
        finally:
            self.metrics.request(status, time.perf_counter() - start, faces)

    async def healthz(self, request: Request) -> Response:
        b = self.predictor.bundle
        return JSONResponse({
            "status": "ok", "detect": self.detect, "image_size": b.image_size,
            "model": {**{k: b.source.get(k) for k in ("config_name", "checkpoint", "step")},
                      "compute_dtype": getattr(self.predictor, "compute_dtype", None)},
            "gender_names": list(b.gender_names), "race_names": list(b.race_names),
            "limits": dataclasses.asdict(self.limits), "unavailable": self.unavailable,
            "in_browser": self.in_browser,
            "batchers": {k: v.stats() for k, v in self.batchers.items()}})

    async def metrics_text(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    async def page(self, request: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html")


def create_app(predictor: Predictor, detect: str = "mtcnn", limits: Limits = DEFAULT_LIMITS,
               warmup: bool = True,
               in_browser: tuple[str | Path, str | Path] | None = None) -> Starlette:
    """`in_browser`: (onnxruntime-web folder, exported ONNX file) for the page's
    in-browser mode (`in_browser.py`)."""
    service = Service(predictor, detect, limits, warmup)
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
