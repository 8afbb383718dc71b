"""The web app's memory under large pasted images: resident memory (RSS, from /proc) of
`python -m facemask.app` while 12 requests each carrying a 40 MB image as a `data:` URL and 30 photo
uploads arrive at once, and how soon it falls back afterwards.

    python bench/app_memory.py --model models/scratch.keras [--data-urls 12] [--megabytes 40] [--photos 30]

The app runs in its own process on 127.0.0.1 (a free port from 7860, its Gradio cache in a temporary
folder); every request goes there and nowhere else. Printed: RSS at rest, the peak (VmHWM) over the
burst, how each request ended, whether the app still answers, RSS every 10 s for a minute afterwards,
and the time SIGTERM takes to stop it. tests/test_app_load.py runs the same burst against the bounds.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SERVING_LINE = re.compile(r"Serving the face mask detector on (http://127\.0\.0\.1:\d+/)")


def noise_png(megabytes: float, seed: int = 0) -> bytes:
    """A PNG of random pixels (which do not compress) of about `megabytes` MB, under the 40-megapixel limit."""
    from PIL import Image

    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def status_kb(pid: int, field: str) -> int:
    """A field of /proc/<pid>/status in kB: VmRSS (resident now) or VmHWM (the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ValueError(f"no {field} for process {pid}")


def rss_mb(pid: int) -> float:
    return status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    return status_kb(pid, "VmHWM") / 1024


def start_app(model: Path, cache: Path, log: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`python -m facemask.app` on the first free port from 7860, its Gradio cache in `cache`; (process, URL)."""
    env = os.environ | {"GRADIO_TEMP_DIR": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2",
                        "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "facemask.app", "--model", str(model), "--port", "0", *args],
                                   cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 300)
    line = process.stdout.readline() if ready else ""
    served = SERVING_LINE.match(line)
    if served is None:
        process.kill()
        raise RuntimeError(f"the app did not start: {line}{log.read_text()[-3000:]}")
    return process, served.group(1)


def call_photo(url: str, value: dict, timeout: float = 300) -> str:
    """POST /gradio_api/call/detect_photo with one input record and follow its event stream: "answered",
    "busy" (queue full), "refused: <status and detail>", "error: <message>" or what went wrong on the way."""
    import httpx

    base = url.rstrip("/")
    try:
        posted = httpx.post(f"{base}/gradio_api/call/detect_photo", json={"data": [value]}, timeout=timeout)
        if posted.status_code != 200:
            busy = posted.status_code == 503 and "queue is full" in posted.text.lower()
            return "busy" if busy else f"refused: {posted.status_code} {posted.text[:100]}"
        event = ""
        with httpx.stream("GET", f"{base}/gradio_api/call/detect_photo/{posted.json()['event_id']}",
                          timeout=timeout) as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line.split(":", 1)[1].strip()
                    if event == "complete":
                        return "answered"
                    message = str(json.loads(payload).get("error") if payload.startswith("{") else payload)
                    return "busy" if "queue is full" in message.lower() else f"error: {message}"
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    return f"no answer (last event {event!r})"


def upload_photo(url: str, photo: Path, timeout: float = 300) -> str:
    """The photo uploaded as a browser does (gradio_client), then detected; "answered", "busy" or the error."""
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
        client.predict(handle_file(str(photo)), api_name="/detect_photo")
    except Exception as error:  # gradio_client raises several types; the message is what matters
        return "busy" if "queue is full" in str(error).lower() else f"error: {type(error).__name__}: {error}"
    return "answered"


class RssSampler:
    """RSS of a process every `every` seconds in a thread, until stopped: [(seconds since start, MB)]."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every, self.samples = pid, every, []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            try:
                self.samples.append((time.monotonic() - self._started, rss_mb(self.pid)))
            except (OSError, ValueError):
                return

    def stop(self) -> list[tuple[float, float]]:
        self._done.set()
        self._thread.join()
        return self.samples


def burst(url: str, pid: int, pasted: str, photos: list[Path], data_urls: int) -> dict:
    """`data_urls` requests with the `pasted` data URL and one upload per photo, all at once; what came back,
    the peak RSS over the burst and how long it took."""
    sampler = RssSampler(pid)
    started = time.monotonic()
    with ThreadPoolExecutor(data_urls + len(photos)) as pool:
        jobs = [pool.submit(call_photo, url, {"url": pasted}) for _ in range(data_urls)]
        jobs += [pool.submit(upload_photo, url, photo) for photo in photos]
        outcomes = [job.result() for job in jobs]
    seconds = time.monotonic() - started
    samples = sampler.stop()
    return {"outcomes": outcomes, "seconds": seconds, "peak_mb": peak_rss_mb(pid),
            "sampled_peak_mb": max((mb for _, mb in samples), default=0.0)}


def settle(pid: int, seconds: float = 60, below_mb: float = 1500, every: float = 1.0) -> tuple[float | None, list]:
    """RSS every `every` s for up to `seconds`; (seconds until it was under `below_mb`, or None, the samples)."""
    started, samples = time.monotonic(), []
    while time.monotonic() - started <= seconds:
        samples.append((time.monotonic() - started, rss_mb(pid)))
        if samples[-1][1] < below_mb:
            return samples[-1][0], samples
        time.sleep(every)
    return None, samples


def photos_for(folder: Path, count: int) -> list[Path]:
    """`count` different 640x480 photos of the astronaut (Gradio caches by content: no two alike)."""
    from PIL import Image
    from skimage import data as skimage_data

    image = Image.fromarray(skimage_data.astronaut()).crop((64, 0, 448, 288)).resize((640, 480))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        paths.append(folder / f"astronaut-{index}.jpg")
        image.save(paths[-1], quality=60 + index)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data-urls", type=int, default=12)
    parser.add_argument("--megabytes", type=float, default=40)
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument("--settle", type=float, default=60, help="seconds to watch RSS after the burst")
    parser.add_argument("--log", type=Path, help="keep the app's stderr in this file")
    args = parser.parse_args()
    cpu = Path("/proc/cpuinfo").read_text().split("model name")[1].split(":")[1].splitlines()[0].strip()
    print(f"CPU: {cpu}; load average: {' '.join(f'{load:.1f}' for load in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        png = noise_png(args.megabytes)
        pasted = data_url(png)
        print(f"{args.data_urls} data URLs of a {len(png) / 2**20:.1f} MB PNG ({len(pasted) / 2**20:.1f} MB of base64) "
              f"+ {args.photos} photo uploads, at once")
        photos = photos_for(work, args.photos)
        process, url = start_app(args.model.resolve(), work / "cache", work / "app.log")
        try:
            time.sleep(2)
            print(f"at rest: RSS {rss_mb(process.pid):.0f} MB")
            result = burst(url, process.pid, pasted, photos, args.data_urls)
            counts = {outcome: result["outcomes"].count(outcome) for outcome in set(result["outcomes"])}
            print(f"burst: {result['seconds']:.1f} s; peak RSS {result['peak_mb']:.0f} MB (VmHWM); outcomes {counts}")
            print(f"still answers: {upload_photo(url, photos[0])}")
            below, samples = settle(process.pid, args.settle)
            print("after: " + ", ".join(f"{t:.0f} s {mb:.0f} MB" for t, mb in samples[::10] + samples[-1:]))
            print(f"under 1500 MB {below:.0f} s after the burst" if below is not None
                  else f"still over 1500 MB after {args.settle:.0f} s")
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(120)
            print(f"SIGTERM: exit {process.returncode} after {time.monotonic() - sent:.2f} s; "
                  f"cache left: {sorted(p.name for p in (work / 'cache').rglob('*'))}")
            log = (work / "app.log").read_text()
            print(f"log: {len(log.splitlines())} lines, {log.count('Traceback')} tracebacks")
            if args.log:
                args.log.write_text(log)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
