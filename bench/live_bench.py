"""Benchmark: the web app's Live tab in Chromium, end to end, for several STREAM_EVERY settings side by side.

    python bench/live_bench.py [--model M.keras] [--seconds 20] [--rounds 3] [--every 0.1 0.05 0.0333]

The app is served in this process (facemask.app.ui.build_app and launch, as tests/conftest.py's `serving`)
once per STREAM_EVERY setting (facemask.app.live.STREAM_EVERY and the ui module's copy patched before
build_app: here only), all with the same real detector: CenterFace + the compact CNN, untrained (speed
only), exported to .onnx as the browser tests' `app_model_file` does; or `--model M.keras`, served as
`facemask app` serves it (the .onnx beside it when it was exported from it).

Chromium (/usr/bin/chromium, driven by Playwright as in tests/test_app_browser.py) plays a generated
.y4m through its fake camera, 25 frames/s of 640x480: 'crowd' shows 5 kaggle-format crowd photos cut to
640x480 (centerface_bench's crowd frames, 1 s each), 'single' the astronaut at 640x480. Each camera frame
carries its number (8 bits and a parity bit, black or white blocks in a column at both side edges, so
the page's mirroring changes nothing), which the page reads back from the camera and from every frame it
shows: the lag of a shown frame is how many camera frames came between the one it was made from and the
one the camera shows at that moment (40 ms each).

A round opens the Live tab for each setting and clip in turn (rounds alternate), starts the stream,
waits for the first frame shown plus --warmup seconds, then counts for --seconds:
- shown: distinct `src` values of `#live-output img` (a MutationObserver in the page), per second;
- sent: the frames the page posted to the stream (window.fetch wrapped before the page loads), per second;
- served: frames the server read and answered (facemask.app.ui.read_frame and facemask.app.live.jpeg_data_url
  wrapped), per second, the mean ms from reading a frame to its JPEG ("server ms"), the median ms the
  detector (find_faces + classify, wrapped) spends on a frame, and the mean ms from an answer to the
  next frame read ("gap": waiting for a frame, and Gradio's work between two calls; server ms + gap ms
  make the server's cycle, 1000 / read/s);
- lag: median and 90th percentile in ms, first half of the window against the second (a backlog grows);
- after the stop button, frames still shown in the next 2 s (a queue would keep showing them).
The machine's CPU use over the window (/proc/stat) and this process's (the server) are printed beside.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from PIL import Image, ImageDraw  # noqa: E402

import facemask.app  # noqa: E402, F401  (offline settings before gradio is imported)

FPS = 25  # the fake camera's frame rate (the .y4m header's)
SIZE = (640, 480)
CAMERA_FRAMES = 125  # 5 s of camera, looped; the number on a frame is its index in the loop
BITS = 8  # 0-255 covers CAMERA_FRAMES
BLOCK = (24, 32)  # one bit: a black (0) or white (1) block, this wide and tall, from the top at TOP
TOP = 16
ASTRONAUT_4x3 = (64, 0, 448, 288)  # tests/conftest.py's astronaut_photo: the part around her face, 4:3

# In the page, before the app's own scripts: every stream post is timed (the page sends a frame per post).
COUNT_SENT = """
window.__sent = [];
const realFetch = window.fetch;
window.fetch = function (input, init) {
  const url = typeof input === 'string' ? input : input.url;
  if (/\\/stream\\/[^/]+$/.test(url) && (!init || init.method === 'POST')) window.__sent.push(performance.now());
  return realFetch.apply(this, arguments);
};
"""

# In the page once the Live tab is open: each new `src` of the output image is timed, and its frame number
# read back, with the camera's frame number at the moment it was shown.
WATCH_SHOWN = """([bits, block, top, frames]) => {
  const live = window.__live = {shown: [], lags: [], unread: 0, last: null};
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d', {willReadFrequently: true});
  function number(source, width, height) {
    canvas.width = width; canvas.height = height;
    context.drawImage(source, 0, 0, width, height);
    const column = context.getImageData(0, 0, block[0], height).data;
    let value = 0, ones = 0;
    for (let bit = 0; bit <= bits; bit++) {
      const y = top + bit * block[1] + (block[1] >> 1), x = block[0] >> 1;
      const i = (y * block[0] + x) * 4;
      const one = (column[i] + column[i + 1] + column[i + 2]) / 3 > 128;
      ones += one;
      if (bit < bits) value = value * 2 + one;
    }
    return ones % 2 === 0 && value < frames ? value : null;  // even parity, in range: read right
  }
  const output = document.querySelector('#live-output');
  new MutationObserver(() => {
    const image = output.querySelector('img');
    const source = image && image.getAttribute('src');
    if (!source || source === live.last) return;
    live.last = source;
    const at = performance.now();
    live.shown.push(at);
    const video = document.querySelector('#live-input video');
    const now = video && video.videoWidth ? number(video, video.videoWidth, video.videoHeight) : null;
    const probe = new Image();
    probe.onload = () => {
      const shown = number(probe, probe.naturalWidth, probe.naturalHeight);
      if (now === null || shown === null) live.unread++;
      else live.lags.push([at, ((now - shown) % frames + frames) % frames]);
    };
    probe.src = source;
  }).observe(output, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""


def numbered(picture: Image.Image, index: int) -> Image.Image:
    """The picture with `index` written at both side edges: BITS bits, most significant first, then even parity."""
    frame = picture.copy()
    draw = ImageDraw.Draw(frame)
    bits = [int(b) for b in format(index, f"0{BITS}b")]
    bits.append(sum(bits) % 2)
    width, height = BLOCK
    for i, bit in enumerate(bits):
        colour = (255, 255, 255) if bit else (0, 0, 0)
        y = TOP + i * height
        for x in (0, frame.width - width):
            draw.rectangle((x, y, x + width - 1, y + height - 1), fill=colour)
    return frame


def write_y4m(path: Path, pictures: list[Image.Image]) -> Path:
    """CAMERA_FRAMES numbered frames at FPS, the pictures in turn for equal shares, as YUV 4:2:0 (what
    Chromium's fake camera plays). tests/test_app_browser.py's write_y4m repeats one unnumbered frame."""
    width, height = SIZE
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(CAMERA_FRAMES):
            picture = pictures[index * len(pictures) // CAMERA_FRAMES]
            y, cb, cr = numbered(picture, index).convert("YCbCr").split()
            half = (width // 2, height // 2)
            out.write(b"FRAME\n" + y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes())
    return path


def camera_clips(folder: Path) -> dict[str, Path]:
    from centerface_bench import DATA, crowd_frames
    from skimage import data as skimage_data

    from facemask.annotations import read_truth

    astronaut = Image.fromarray(skimage_data.astronaut()).crop(ASTRONAUT_4x3).resize(SIZE, Image.BILINEAR)
    return {"crowd": write_y4m(folder / "crowd.y4m", crowd_frames(read_truth(DATA / "train.csv"))),
            "single": write_y4m(folder / "single.y4m", [astronaut])}


def served_model(folder: Path) -> Path:
    """The browser tests' classifier: the compact CNN, untrained, saved and exported to .onnx beside it."""
    from facemask.conversion import export_onnx
    from facemask.models import build_compact, save_model

    model = build_compact()
    path = save_model(model, folder / "compact.keras")
    export_onnx(model, path.with_suffix(".onnx"), None, None)
    return path.with_suffix(".onnx")


class Timed:
    """The app's FaceMaskDetector, its find_faces and classify timed: one record per frame, [end, ms]."""

    def __init__(self, detector):
        self._detector = detector
        self.frames: list[list[float]] = []

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def find_faces(self, *args, **kwargs):
        started = time.perf_counter()
        faces = self._detector.find_faces(*args, **kwargs)
        self.frames.append([time.monotonic(), 1000 * (time.perf_counter() - started)])
        return faces

    def classify(self, *args, **kwargs):
        started = time.perf_counter()
        found = self._detector.classify(*args, **kwargs)
        self.frames[-1][1] += 1000 * (time.perf_counter() - started)
        return found


class ServerLog:
    """Frames the app read and answered: facemask.app.ui.read_frame and facemask.app.live.jpeg_data_url wrapped."""

    def __init__(self):
        import facemask.app.live as live
        import facemask.app.ui as ui

        self.read: list[float] = []
        self.answered: list[tuple[float, float]] = []  # (time, ms since the frame was read)
        read_frame, jpeg_data_url = ui.read_frame, live.jpeg_data_url

        def timed_read(*args, **kwargs):
            self.read.append(time.monotonic())
            return read_frame(*args, **kwargs)

        def timed_answer(*args, **kwargs):
            url = jpeg_data_url(*args, **kwargs)
            now = time.monotonic()
            self.answered.append((now, 1000 * (now - self.read[-1]) if self.read else float("nan")))
            return url

        ui.read_frame, live.jpeg_data_url = timed_read, timed_answer


def build_apps(detector, settings: list[float]) -> dict[float, tuple]:
    """One app per STREAM_EVERY setting, each served on a port of its own: (the app, its URL) by setting."""
    import facemask.app.live as live
    import facemask.app.ui as ui

    apps = {}
    for every in settings:
        live.STREAM_EVERY = ui.STREAM_EVERY = every  # read by build_app (the page's stream_every)
        demo = ui.build_app(detector)
        apps[every] = demo, ui.launch(demo, port=0)[0]
    return apps


def cpu_busy() -> tuple[float, float]:
    """Busy and total jiffies of the machine so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def per_second(times: list[float], start: float, end: float) -> float:
    return sum(start <= t < end for t in times) / (end - start)


def live_round(browser, url: str, every: float, seconds: float, warmup: float, server: ServerLog,
               detector: Timed) -> dict:
    """One stream in a fresh page: the figures of its counted window (see the module's docstring)."""
    from test_app_browser import start_webcam

    import facemask.app.live as live

    live.STREAM_EVERY = every  # LiveWatch's tracker reads it when the stream starts
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(120_000)
    context.add_init_script(COUNT_SENT)
    try:
        page = context.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Live").click()
        page.evaluate(WATCH_SHOWN, [BITS, list(BLOCK), TOP, CAMERA_FRAMES])
        stop = start_webcam(page, "Live", "live-input", "capture photo")
        page.wait_for_function("window.__live.shown.length > 0")
        page.wait_for_timeout(warmup * 1000)
        busy, total, cpu = *cpu_busy(), time.process_time()
        start, page_start = time.monotonic(), page.evaluate("performance.now()")
        page.wait_for_timeout(seconds * 1000)
        end, page_end = time.monotonic(), page.evaluate("performance.now()")
        busy, total, cpu = cpu_busy()[0] - busy, cpu_busy()[1] - total, time.process_time() - cpu
        stop.click()
        stopped = page.evaluate("performance.now()")
        page.wait_for_timeout(2000)
        shown, lags, unread, sent = page.evaluate("[window.__live.shown, window.__live.lags, window.__live.unread, "
                                                  "window.__sent]")
    finally:
        context.close()
    middle = (page_start + page_end) / 2
    lag_ms = [(at, 1000 * frames / FPS) for at, frames in lags if page_start <= at < page_end]
    frames = [f for f in detector.frames if start <= f[0] < end]
    answered = [a for a in server.answered if start <= a[0] < end]
    answer_times = [t for t, _ in server.answered]
    # From an answer to the next frame read: the server waiting for a frame, and Gradio's own work between.
    gaps = [1000 * (t - answer_times[i - 1]) for t in server.read if start <= t < end
            for i in [bisect.bisect(answer_times, t)] if i > 0]
    return {
        "shown": 1000 * per_second(shown, page_start, page_end),  # the page's clock counts ms
        "sent": 1000 * per_second(sent, page_start, page_end),
        "read": per_second(server.read, start, end),
        "answered": len(answered) / (end - start),
        "server_ms": statistics.mean(ms for _, ms in answered) if answered else float("nan"),
        "detector_ms": statistics.median(ms for _, ms in frames) if frames else float("nan"),
        "gap_ms": statistics.mean(gaps) if gaps else float("nan"),
        "lag": [ms for _, ms in lag_ms],
        "lag_halves": [statistics.median([ms for at, ms in lag_ms if (at >= middle) == half] or [float("nan")])
                       for half in (False, True)],
        "unread": unread,
        "after_stop": sum(t > stopped for t in shown),
        "machine_cpu": 100 * busy / total if total else float("nan"),
        "server_cpu": 100 * cpu / (end - start),
    }


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=10)[round(q * 10) - 1] if len(values) >= 2 else float("nan")


COLUMNS = ("clip", "stream_every", "shown/s (rounds)", "ratio", "sent/s", "read/s", "answered/s", "server ms",
           "detector ms", "gap ms", "lag ms: median, p90", "lag halves", "after stop", "CPU: machine, server")


def report(results: dict, settings: list[float], clips: list[str], rounds: int) -> None:
    """One Markdown row per clip and setting: medians over the rounds (lags: over all frames of all rounds)."""
    print(f"\n== Live tab in Chromium, 640x480 fake camera at {FPS} frames/s; median of {rounds} rounds; "
          "ratio: shown/s against the first setting's")
    print("| " + " | ".join(COLUMNS) + " |\n|" + " --- |" * len(COLUMNS))
    for clip in clips:
        base = statistics.median(r["shown"] for r in results[clip, settings[0]])
        for every in settings:
            runs = results[clip, every]
            median = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key not in
                      ("lag", "lag_halves", "unread", "after_stop")}
            lags = [ms for r in runs for ms in r["lag"]]
            halves = [statistics.median(r["lag_halves"][i] for r in runs) for i in (0, 1)]
            each = ", ".join(f"{r['shown']:.1f}" for r in runs)
            cells = [clip, f"{every:.3g}", f"**{median['shown']:.1f}** ({each})",
                     f"{median['shown'] / base:.2f}x", f"{median['sent']:.1f}", f"{median['read']:.1f}",
                     f"{median['answered']:.1f}", f"{median['server_ms']:.0f}", f"{median['detector_ms']:.0f}",
                     f"{median['gap_ms']:.0f}",
                     f"{statistics.median(lags) if lags else float('nan'):.0f}, {quantile(lags, 0.9):.0f}",
                     f"{halves[0]:.0f}, {halves[1]:.0f}", str(max(r["after_stop"] for r in runs)),
                     f"{median['machine_cpu']:.0f}%, {median['server_cpu']:.0f}%"]
            print("| " + " | ".join(cells) + " |")
    unread = sum(r["unread"] for runs in results.values() for r in runs)
    print(f"(frames whose number could not be read back, left out of the lag: {unread})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="a .keras classifier, served as `facemask app` serves it (default: the compact CNN, "
                             "untrained, as .onnx)")
    parser.add_argument("--seconds", type=float, default=20.0, help="counted window of each stream")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the first frame shown")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=float, nargs="+", default=[0.1, 0.05, 1 / 30],
                        help="STREAM_EVERY settings, the first the baseline")
    parser.add_argument("--clips", nargs="+", choices=["crowd", "single"], default=["crowd", "single"])
    args = parser.parse_args(argv)

    from playwright.sync_api import expect, sync_playwright
    from test_app_browser import CHROMIUM, CHROMIUM_ARGS

    from facemask.detection import FaceMaskDetector

    cpu = re.search(r"model name\s*: (.*)", Path("/proc/cpuinfo").read_text()).group(1)
    flags = sorted(set(re.findall(r"\bavx\w*", Path("/proc/cpuinfo").read_text())))
    print(f"CPU {cpu} ({' '.join(flags)}), {os.cpu_count()} cores; load average at start {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="live_bench_") as folder:
        folder = Path(folder)
        os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")
        model = args.model or served_model(folder)
        detector = Timed(FaceMaskDetector.from_path(model))
        detector.detect(Image.new("RGB", SIZE))  # the models' first call, out of the counts
        server = ServerLog()
        apps = build_apps(detector, args.every)
        clips = camera_clips(folder)
        expect.set_options(timeout=120_000)
        results = defaultdict(list)
        with sync_playwright() as playwright:
            browsers = {clip: playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={path}"])
                for clip, path in clips.items() if clip in args.clips}
            for round_ in range(args.rounds):
                order = args.every if round_ % 2 == 0 else args.every[::-1]
                for clip, browser in browsers.items():
                    for every in order:
                        run = live_round(browser, apps[every][1], every, args.seconds, args.warmup, server, detector)
                        results[clip, every].append(run)
                        print(f"round {round_ + 1} {clip} {every:.4f}: {run['shown']:.1f} shown/s, {run['sent']:.1f} "
                              f"sent/s, {run['answered']:.1f} answered/s, detector {run['detector_ms']:.0f} ms, "
                              f"lag {statistics.median(run['lag']) if run['lag'] else float('nan'):.0f} ms, "
                              f"load {os.getloadavg()[0]:.1f}", flush=True)
            for browser in browsers.values():
                browser.close()
        for demo, _ in apps.values():
            demo.close()
    report(results, args.every, list(browsers), args.rounds)
    print(f"load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
