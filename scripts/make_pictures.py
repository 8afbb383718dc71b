"""Make the README's pictures in docs/: an annotated photo, training curves, the confusion matrix,
the photos' precision-recall curve and a screenshot of the web app in Chromium.

    python scripts/make_pictures.py --model MODEL --metrics METRICS_JSON \\
        [--history HISTORY_JSON] [--pr-curve PR_PNG] [--manifest MANIFEST] [--photo PHOTO] \\
        [--images sample/images] [--out docs] [--no-screenshot]

The photo is one of the CC0 photos in sample/images. Given split.py's manifest of the split the model
was trained on, it must be a TEST photo of that split (the model never saw it); without --photo the
best one is picked (faces of both classes, then the most faces: scripts/demo_photo.py). The history
defaults to `<model stem>_history.json` beside the model, as facemask.train writes it.

Every file written is at most MAX_BYTES (a README should load fast and the repository stay small):
JPEGs are saved at falling quality and PNGs reduced to 256 colours until they fit.
The screenshot starts `facemask app` on a free port of 127.0.0.1, uploads the photo in
the Photo tab with Playwright driving Debian's /usr/bin/chromium, and waits for the boxed result;
the page may reach nothing but the app (offline).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python scripts/make_pictures.py`: the facemask package is one level up
sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_photo import PickError, is_test_photo, pick_test_photo  # noqa: E402

MAX_BYTES = 300_000
CHROMIUM = Path("/usr/bin/chromium")
# As tests/test_app_browser.py launches it, minus the fake camera: nothing here uses the webcam.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
SCREENSHOT_VIEWPORT = {"width": 1100, "height": 760}
APP_START_SECONDS = 240  # loading TensorFlow and the model on two busy cores
DETECTION_MS = 120_000
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


class PictureError(Exception):
    """A picture cannot be made: missing input, a file that will not fit MAX_BYTES, an app that does not start."""


# ---------------------------------------------------------------- saving under the size limit


def encode(image: Image.Image, suffix: str, max_bytes: int = MAX_BYTES) -> bytes:
    """The image as JPEG or PNG bytes, at most `max_bytes`, losing as little as it must."""
    if suffix in (".jpg", ".jpeg"):
        rgb = image.convert("RGB")
        for quality in range(92, 49, -6):
            data = _save_bytes(rgb, "JPEG", quality=quality, optimize=True, progressive=True)
            if len(data) <= max_bytes:
                return data
    elif suffix == ".png":
        data = _save_bytes(image, "PNG", optimize=True)
        if len(data) <= max_bytes:
            return data
        # Plots and screenshots are mostly flat colour: 256 colours keep text crisp at a fraction of the size.
        data = _save_bytes(image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT), "PNG", optimize=True)
        if len(data) <= max_bytes:
            return data
    else:
        raise PictureError(f"unsupported picture type {suffix!r} (use .jpg or .png)")
    raise PictureError(f"cannot fit a {image.width}x{image.height} picture into {max_bytes:,} bytes as {suffix}")


def _save_bytes(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def write_picture(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(image, path.suffix.lower()))
    return path


def figure_image(figure) -> Image.Image:
    """A matplotlib Figure rendered as facemask.evaluate saves its reports (100 dpi, tight box)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


# ---------------------------------------------------------------- the pictures


def choose_photo(photo: Path | None, manifest: Path | None, images: Path) -> Path:
    """The photo to show: the given one (checked against the manifest's test split) or the best test photo."""
    if photo is None:
        if manifest is None:
            raise PictureError("give --photo, or --manifest to pick a test photo the model never trained on")
        return pick_test_photo(manifest, images)
    if not photo.is_file():
        raise PictureError(f"{photo}: no such photo")
    if manifest is not None and not is_test_photo(manifest, photo):
        raise PictureError(f"{photo.name} is not a test photo of {manifest}: the model may have trained on it")
    return photo


def annotated_photo(model: Path, photo: Path, width: int) -> tuple[Image.Image, str]:
    """The photo boxed by the detector + classifier, enlarged to `width` for display, and a summary.

    Faces are found and classified on the original pixels, exactly as `facemask detect` does;
    only the drawing is done on the enlarged copy, so boxes and labels stay sharp on a 400 px photo.
    """
    from dataclasses import replace

    from facemask.detection import FaceMaskDetector, draw_detections
    from facemask.images import load_image

    image = load_image(photo)
    detections = FaceMaskDetector.from_path(model).detect(image)
    scale = max(1.0, width / image.width)  # enlarge only: a large photo keeps its size
    if scale > 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        detections = [replace(d, box=tuple(round(v * scale) for v in d.box)) for d in detections]
    masks = sum(d.label == "mask" for d in detections)
    summary = f"{photo.name}: {len(detections)} faces, {masks} mask, {len(detections) - masks} no-mask"
    return draw_detections(image, detections), summary


def curves_picture(history_path: Path) -> Image.Image:
    from facemask.plots import plot_history

    history = json.loads(history_path.read_text())
    return figure_image(plot_history(history))


def confusion_picture(metrics_path: Path) -> Image.Image:
    from facemask.plots import plot_confusion

    metrics = json.loads(metrics_path.read_text())
    figure = plot_confusion(metrics["confusion_matrix"], metrics["class_names"])
    return figure_image(figure)


# ---------------------------------------------------------------- the app in Chromium


# The line `facemask app` prints once it serves, with the port it took.
SERVING_LINE = re.compile(r"^Serving the face mask detector on (http://\S+/)")


def serving_url(process: subprocess.Popen, seconds: float) -> str:
    """The URL the app prints once it serves; PictureError if it stops or stays silent for `seconds`."""
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    line = process.stdout.readline() if ready else ""
    served = SERVING_LINE.match(line)
    if served is None:
        if not ready:
            raise PictureError(f"the app did not serve within {seconds:.0f} s")
        process.wait(timeout=30)  # nothing, or not the expected line: the app is stopping
        raise PictureError(f"the app exited with status {process.returncode} before serving")
    return served.group(1)


@contextmanager
def running_app(model: Path) -> Iterator[str]:
    """`facemask app` on a free local port, its uploads in a temporary folder; yields its URL.

    `--port 0`: the app takes the first free port from 7860 as it binds it, and prints its URL, so no
    port is picked here and freed again for another process to take in between.
    """
    with tempfile.TemporaryDirectory(prefix="make-pictures-") as cache:
        env = os.environ | OFFLINE_ENV | {"GRADIO_TEMP_DIR": cache}
        command = [sys.executable, "-m", "facemask.app", "--model", str(model), "--host", "127.0.0.1",
                   "--port", "0"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        try:
            yield serving_url(process, APP_START_SECONDS)
        finally:
            process.terminate()  # SIGTERM: the app stops as on Ctrl+C and deletes its cached files
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def app_screenshot(model: Path, photo: Path) -> Image.Image:
    """The app's Photo tab after the photo was uploaded and came back boxed, as Chromium shows it."""
    if not CHROMIUM.is_file():
        raise PictureError(f"{CHROMIUM} is absent: run `make chromium`, or pass --no-screenshot")
    from playwright.sync_api import expect, sync_playwright

    with running_app(model) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=SCREENSHOT_VIEWPORT)
            context.set_default_timeout(DETECTION_MS)
            expect.set_options(timeout=DETECTION_MS)
            # Offline: the page may load nothing but the app (and its own data: and blob: URLs).
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
                (url, "data:", "blob:")) else route.abort())
            page = context.new_page()
            page.goto(url)
            expect(page.get_by_role("heading", name="Face mask detection")).to_be_visible()
            page.locator("#photo-input button[aria-label='Upload file']").click()
            page.locator("#photo-input input[type=file]").set_input_files(str(photo))
            expect(page.locator("#photo-input img").first).to_be_visible()
            # Older versions of the app detect on a click, newer ones on upload: click only if the button is there.
            button = page.locator("#photo-button")
            if button.count() and button.is_visible():
                button.click()
            expect(page.locator("#photo-status textarea")).to_have_value(re.compile(r"\d+ faces?"))
            expect(page.locator("#photo-output img")).to_be_visible()
            # The faces table (header and one row per face) belongs in the picture too.
            expect(page.get_by_role("grid", name="Faces").get_by_role("row").nth(1)).to_be_visible()
            page.wait_for_timeout(500)  # let the result image finish fading in
            return Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
        finally:
            browser.close()


# ---------------------------------------------------------------- the command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a saved .keras classifier")
    parser.add_argument("--metrics", type=Path, required=True,
                        help="a metrics JSON of `facemask evaluate crops` (its confusion matrix)")
    parser.add_argument("--history", type=Path, default=None,
                        help="training history JSON (default: <model stem>_history.json beside the model)")
    parser.add_argument("--pr-curve", type=Path, default=None,
                        help="the precision-recall PNG of `facemask evaluate photos` (optional)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="split.py's manifest.csv of the split the model trained on: the photo must be a "
                             "test photo of it")
    parser.add_argument("--photo", type=Path, default=None, help="the photo to annotate (default: picked from "
                        "--images among the manifest's test photos)")
    parser.add_argument("--images", type=Path, default=ROOT / "sample" / "images",
                        help="where to pick the photo from (default: sample/images, the CC0 photos)")
    parser.add_argument("--width", type=int, default=800, help="annotated photo enlarged to this width (default 800)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="output folder (default: docs/)")
    parser.add_argument("--no-screenshot", action="store_true", help="skip the app screenshot (no browser needed)")
    return parser.parse_args(argv)


def make_pictures(args: argparse.Namespace) -> list[Path]:
    history = args.history or args.model.with_name(f"{args.model.stem}_history.json")
    for label, path in (("model", args.model), ("metrics", args.metrics), ("history", history),
                        ("pr-curve", args.pr_curve)):
        if path is not None and not path.is_file():
            raise PictureError(f"--{label} {path}: no such file")
    photo = choose_photo(args.photo, args.manifest, args.images)
    annotated, summary = annotated_photo(args.model, photo, args.width)
    print(summary, flush=True)
    written = [
        write_picture(annotated, args.out / "annotated.jpg"),
        write_picture(curves_picture(history), args.out / "curves.png"),
        write_picture(confusion_picture(args.metrics), args.out / "confusion.png"),
    ]
    if args.pr_curve is not None:
        written.append(write_picture(Image.open(args.pr_curve), args.out / "pr_curve.png"))
    if not args.no_screenshot:
        written.append(write_picture(app_screenshot(args.model, photo), args.out / "app.png"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(OFFLINE_ENV)
    try:
        written = make_pictures(args)
    except (PictureError, PickError, OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"{path}  {path.stat().st_size / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
