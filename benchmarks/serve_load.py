"""Load test of a running `python -m agr_jax.serve`: N concurrent clients x M requests each.

    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --clients 16 --requests 50

Reports requests/s, p50/p99 latency, errors by kind and lost requests (sent, never answered)
as JSON. Loopback only (other hosts are refused), bounded in count (clients x requests) and
in time (--max_seconds: then every client stops and the unanswered requests count as lost).
`--spawn "ARGS"` starts `python -m agr_jax.serve ARGS` on --url's port first and stops it after.
The image sent is --image, or a generated 640x480 JPEG (with `--detect none`, a face crop).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's agr_jax


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=50, help="Per client.")
    parser.add_argument("--image", help="Image file to send (default: a generated one).")
    parser.add_argument("--detect", choices=["mtcnn", "haar", "none"],
                        help="?detect= (default: the server's).")
    parser.add_argument("--max_seconds", type=float, default=300.0,
                        help="Stop everything after this long.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Per request, seconds.")
    parser.add_argument("--spawn", help="Start `python -m agr_jax.serve SPAWN` first.")
    parser.add_argument("--json", help="Also write the report here.")
    return parser


def generated_image(detect: str | None) -> bytes:
    from PIL import Image

    from agr_jax.data import synthetic

    rng = np.random.default_rng(0)
    if detect == "none":
        image = synthetic.render(35, 0, 1, rng, size=64)
    else:  # a photo-sized frame with two generated faces on a noisy background
        image = rng.integers(60, 200, (480, 640, 3), dtype=np.uint8)
        for x in (120, 380):
            image[140:340, x:x + 200] = np.asarray(
                Image.fromarray(synthetic.render(30, 1, 2, rng, size=64)).resize((200, 200)))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"--url {url}: this load test only sends to loopback ({LOOPBACK})")


async def load(url: str, image: bytes, clients: int, requests: int, detect: str | None = None,
               max_seconds: float = 300.0, timeout: float = 60.0) -> dict[str, Any]:
    """Runs the load; returns the report (latencies of answered requests only)."""
    import httpx

    check_loopback(url)
    target = f"{url.rstrip('/')}/v1/predict" + (f"?detect={detect}" if detect else "")
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sent = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        for _ in range(requests):
            sent += 1
            start = time.perf_counter()
            try:
                answer = await http.post(target, content=image,
                                         headers={"content-type": "image/jpeg"})
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1
                continue
            if answer.status_code == 200 and "records" in answer.json():
                latencies.append(time.perf_counter() - start)
            else:
                errors[f"HTTP {answer.status_code}"] += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        tasks = [asyncio.create_task(client(http)) for _ in range(clients)]
        done, pending = await asyncio.wait(tasks, timeout=max_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.perf_counter() - start
    answered = len(latencies) + sum(errors.values())
    ms = np.asarray(latencies) * 1e3
    return {
        "url": target, "clients": clients, "requests_per_client": requests,
        "planned": clients * requests, "sent": sent, "ok": len(latencies),
        "errors": dict(errors), "lost": clients * requests - answered,
        "seconds": round(elapsed, 3), "requests_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "timed_out": bool(pending),
    }


def spawn(url: str, args: str, wait_s: float = 600.0) -> subprocess.Popen:
    """`python -m agr_jax.serve ARGS --port PORT`, returned once /healthz answers."""
    import httpx

    port = urlparse(url).port or 8000
    process = subprocess.Popen([sys.executable, "-m", "agr_jax.serve", *shlex.split(args),
                                "--host", "127.0.0.1", "--port", str(port)])
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(f"{url.rstrip('/')}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(1)
    process.terminate()
    raise SystemExit(f"the server did not answer /healthz within {wait_s:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_loopback(args.url)
    image = Path(args.image).read_bytes() if args.image else generated_image(args.detect)
    server = spawn(args.url, args.spawn) if args.spawn is not None else None
    try:
        report = asyncio.run(load(args.url, image, args.clients, args.requests, args.detect,
                                  args.max_seconds, args.timeout))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if not report["errors"] and not report["lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
