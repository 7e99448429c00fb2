"""Load test of a running `python -m agr_jax.serve`: N concurrent clients x M requests each,
optionally with small-request clients streaming beside them.

    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --clients 16 --requests 50
    # issue 38's service target: 16 clients x 20 phone photos (4000x3000 JPEG q90 made from a
    # real photo), while 2 clients send 96x112 face crops (?detect=none) until they finish
    python benchmarks/serve_load.py --phone --clients 16 --requests 20 --small_clients 2 \\
        --retry --spawn "" --json runs/serve_load_phone.json

Reports, per group, requests/s, p50/p99 latency, errors by kind and lost requests (sent,
never answered), the XLA compiles the server made during the run (/metrics'
`agr_xla_compiles_after_ready`, before and after) and the issue's targets as JSON. Loopback
only (other hosts are refused), bounded in count (clients x requests) and in time
(--max_seconds: then every client stops and the unanswered requests count as lost).
`--spawn "ARGS"` starts `python -m agr_jax.serve ARGS` on --url's port first (and waits for
/healthz to say ready) and stops it after. The image sent is --image, --phone (made by
`phone_photo`), or a generated 640x480 JPEG (with `--detect none`, a face crop).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's agr_jax
PHOTO = ROOT.parent / "shared" / "photos" / "if_t1.jpg"  # 6 adults round a table, 1280x886
PHONE = (4000, 3000)
TARGETS = {"phone_p99_ms": 3000.0, "small_p99_ms": 1000.0, "compiles_after_ready": 0}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=50, help="Per client.")
    parser.add_argument("--image", help="Image file to send (default: a generated one).")
    parser.add_argument("--phone", nargs="?", const=str(PHOTO), metavar="PHOTO",
                        help="Send PHOTO (default ../shared/photos/if_t1.jpg) upscaled to a "
                        "4000x3000 JPEG of quality 90, as a phone takes it.")
    parser.add_argument("--detect", help="?detect= (default: the server's).")
    parser.add_argument("--small_clients", type=int, default=0,
                        help="Clients sending small requests while the main clients run.")
    parser.add_argument("--small_image", help="What they send (default: a 96x112 crop of the "
                        "main image's centre, or a generated face crop).")
    parser.add_argument("--small_detect", default="none", help="Their ?detect= (default none).")
    parser.add_argument("--small_interval", type=float, default=0.05,
                        help="Seconds each small client waits between its requests.")
    parser.add_argument("--retry", action="store_true",
                        help="Clients honour 503's Retry-After: wait, then send again (the "
                        "latency counts from the first send; retries are reported).")
    parser.add_argument("--max_seconds", type=float, default=300.0,
                        help="Stop everything after this long.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Per request, seconds.")
    parser.add_argument("--spawn", help="Start `python -m agr_jax.serve SPAWN` first.")
    parser.add_argument("--json", help="Also write the report here.")
    return parser


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def phone_photo(source: str | Path = PHOTO, size: tuple[int, int] = PHONE) -> bytes:
    """A real photo upscaled (Lanczos, cropped to the aspect) to a phone's 4000x3000 JPEG,
    quality 90: the pixel count and file size a phone sends, with real faces in it."""
    from PIL import Image, ImageOps

    source = Path(source)
    if not source.is_file():
        raise SystemExit(f"--phone {source}: no such photo (../shared/photos holds real ones; "
                         "or give --image PATH)")
    photo = ImageOps.fit(Image.open(source).convert("RGB"), size, Image.Resampling.LANCZOS)
    return jpeg(np.asarray(photo), 90)


def centre_crop(data: bytes, size: tuple[int, int] = (96, 112)) -> bytes:
    """A face-crop-sized JPEG from the centre of an image (the small requests)."""
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(data)).convert("RGB")
    return jpeg(np.asarray(ImageOps.fit(image, size, Image.Resampling.BILINEAR)), 90)


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
    return jpeg(image)


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"--url {url}: this load test only sends to loopback ({LOOPBACK})")


@dataclass
class Group:
    """One kind of client: what it sends and what it measured."""

    image: bytes
    clients: int
    requests: int | None  # per client; None: until the main group is done
    detect: str | None = None
    interval: float = 0.0
    retry: bool = False  # on 503, wait Retry-After seconds and send again
    retries: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    sent: int = 0

    def target(self, url: str) -> str:
        return f"{url.rstrip('/')}/v1/predict" + (f"?detect={self.detect}" if self.detect else "")

    def report(self, url: str, elapsed: float) -> dict[str, Any]:
        ms = np.asarray(self.latencies) * 1e3
        answered = len(self.latencies) + sum(self.errors.values())
        planned = self.clients * self.requests if self.requests is not None else self.sent
        return {
            "url": self.target(url), "clients": self.clients,
            "requests_per_client": self.requests, "image_bytes": len(self.image),
            "planned": planned, "sent": self.sent, "ok": len(self.latencies),
            "errors": dict(self.errors), "lost": planned - answered, "retries": self.retries,
            "requests_s": round(len(self.latencies) / elapsed, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
            "max_ms": round(float(ms.max()), 1) if len(ms) else None,
        }


async def compiles_after_ready(http, url: str) -> float | None:
    """The server's `agr_xla_compiles_after_ready` (None if it does not report it)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = (await http.get(f"{url.rstrip('/')}/metrics")).text
    except Exception:  # noqa: BLE001 - a server without metrics still gets load-tested
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "agr_xla_compiles_after_ready":
                return sample.value
    return None


async def load(url: str, image: bytes, clients: int, requests: int, detect: str | None = None,
               max_seconds: float = 300.0, timeout: float = 60.0,
               small: Group | None = None, retry: bool = False) -> dict[str, Any]:
    """Runs the load; returns the report (latencies of answered requests only). `small`:
    clients that keep sending while the main clients run; `retry`: the main clients honour
    503's Retry-After."""
    import httpx

    check_loopback(url)
    main_group = Group(image, clients, requests, detect, retry=retry)
    done = asyncio.Event()

    async def client(http: httpx.AsyncClient, group: Group) -> None:
        k = 0
        while (k < group.requests) if group.requests is not None else not done.is_set():
            k += 1
            group.sent += 1
            start = time.perf_counter()
            try:
                while True:
                    answer = await http.post(group.target(url), content=group.image,
                                             headers={"content-type": "image/jpeg"})
                    if not (group.retry and answer.status_code == 503):
                        break
                    group.retries += 1
                    await asyncio.sleep(float(answer.headers.get("retry-after", 1)))
            except httpx.HTTPError as e:
                group.errors[type(e).__name__] += 1
                continue
            if answer.status_code == 200 and "records" in answer.json():
                group.latencies.append(time.perf_counter() - start)
            else:
                group.errors[f"HTTP {answer.status_code}"] += 1
            if group.interval:
                await asyncio.sleep(group.interval)

    async def main_clients(http: httpx.AsyncClient) -> None:
        try:
            await asyncio.gather(*[client(http, main_group) for _ in range(clients)])
        finally:
            done.set()

    groups = [main_group] + ([small] if small is not None else [])
    n = sum(g.clients for g in groups) + 1
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        compiles_before = await compiles_after_ready(http, url)
        tasks = [asyncio.create_task(main_clients(http))]
        if small is not None:
            tasks += [asyncio.create_task(client(http, small)) for _ in range(small.clients)]
        _, pending = await asyncio.wait(tasks, timeout=max_seconds)
        done.set()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.perf_counter() - start
        compiles_after = await compiles_after_ready(http, url)
    report = {**main_group.report(url, elapsed), "seconds": round(elapsed, 3),
              "timed_out": bool(pending),
              "compiles_after_ready": {"before": compiles_before, "after": compiles_after}}
    if small is not None:
        report["small"] = small.report(url, elapsed)
    return report


def check_targets(report: dict[str, Any]) -> dict[str, bool]:
    """Issue 38's service targets, for a run with the phone photo and small clients."""
    compiles = report["compiles_after_ready"]
    out = {"all_answered": report["ok"] == report["planned"],
           "phone_p99_le_3s": (report["p99_ms"] or np.inf) <= TARGETS["phone_p99_ms"]}
    if "small" in report:
        out["small_p99_le_1s"] = (report["small"]["p99_ms"] or np.inf) <= TARGETS["small_p99_ms"]
        out["small_all_answered"] = report["small"]["ok"] == report["small"]["sent"]
    if compiles["after"] is not None:
        out["no_compiles_after_ready"] = compiles["after"] == TARGETS["compiles_after_ready"]
    return out


def spawn(url: str, args: str, wait_s: float = 900.0) -> subprocess.Popen:
    """`python -m agr_jax.serve ARGS --port PORT`, returned once /healthz says ready."""
    import httpx

    port = urlparse(url).port or 8000
    process = subprocess.Popen([sys.executable, "-m", "agr_jax.serve", *shlex.split(args),
                                "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT)
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
    if args.image:
        image = Path(args.image).read_bytes()
    elif args.phone:
        image = phone_photo(args.phone)
    else:
        image = generated_image(args.detect)
    small = None
    if args.small_clients:
        small_image = (Path(args.small_image).read_bytes() if args.small_image
                       else centre_crop(image) if args.image or args.phone
                       else generated_image("none"))
        small = Group(small_image, args.small_clients, None, args.small_detect,
                      args.small_interval)
    started = time.perf_counter()
    server = spawn(args.url, args.spawn) if args.spawn is not None else None
    ready_s = time.perf_counter() - started
    try:
        report = asyncio.run(load(args.url, image, args.clients, args.requests, args.detect,
                                  args.max_seconds, args.timeout, small, args.retry))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    if server is not None:
        report["spawn"] = {"args": args.spawn, "seconds_to_ready": round(ready_s, 1)}
    if args.phone:
        report["image"] = {"phone_from": args.phone, "size": list(PHONE), "quality": 90}
        report["targets"] = check_targets(report)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    failed = report["errors"] or report["lost"] or (small and (small.errors or report["small"]
                                                                ["lost"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
