"""The web app in a real browser: headless Chromium (Debian's package) driven by Playwright.

Chromium's fake camera plays a generated .y4m of the astronaut, so a webcam snapshot and the Live
tab's stream have a real face in them. Every request the page makes outside the app is refused and
recorded: the page must load and work offline. Skipped when /usr/bin/chromium is absent (`make chromium` installs it).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import astronaut_photo
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
                 "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
TIMEOUT_MS = 90_000  # two shared cores: a first detection can take a while

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is absent: run `make chromium` (Debian: apt-get "
                                                      "install chromium) to run the browser tests"),
]


@pytest.fixture(scope="module")
def app_model_file(tmp_path_factory, real_sample_crops) -> Path:
    """The browser tests' classifier as training leaves it: the compact CNN (untrained: these tests check
    plumbing) and the .onnx exported from it beside it, which every tab then serves in its place."""
    from facemask.classifier import load_served
    from facemask.conversion import export
    from facemask.models import build_compact, save_model

    path = save_model(build_compact(), tmp_path_factory.mktemp("models") / "compact.keras")
    export(path, "onnx", None, path.with_suffix(".onnx"), real_sample_crops, None)
    assert load_served(path, say=lambda line: None).format == "onnx"
    return path


def write_y4m(path: Path, image: Image.Image, frames: int = 2) -> Path:
    """An uncompressed YUV 4:2:0 video, the format Chromium's fake camera plays from a file."""
    width, height = image.size
    y, cb, cr = image.convert("YCbCr").split()
    half = (width // 2, height // 2)
    frame = b"FRAME\n" + y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes()
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    camera = write_y4m(tmp_path_factory.mktemp("camera") / "astronaut.y4m", astronaut_photo((320, 240)))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh page on the app; any request leaving the app is aborted, and must not have happened."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    outside = []

    def only_the_app(route):
        if route.request.url.startswith(app_url) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_app)
    page = context.new_page()
    page.goto(app_url)
    expect(page.get_by_role("heading", name="Face mask detection")).to_be_visible()
    yield page
    context.close()
    assert outside == [], f"the page tried to reach outside the app: {outside}"


def upload_photo(page, photo: Path) -> None:
    page.locator("#photo-input button[aria-label='Upload file']").click()
    page.locator("#photo-input input[type=file]").set_input_files(str(photo))


def annotated_photo(page) -> Image.Image:
    """The picture the page shows as the result, fetched from the app as the browser did."""
    from playwright.sync_api import expect

    image = page.locator("#photo-output img")
    expect(image).to_be_visible()
    response = page.request.get(image.get_attribute("src"))
    assert response.ok
    return Image.open(io.BytesIO(response.body())).convert("RGB")


def face_rows(page):
    """The faces table's rows, header first (the table is a role=grid of role=row)."""
    return page.get_by_role("grid", name="Faces").get_by_role("row")


def box_coloured(image: Image.Image, label: str) -> np.ndarray:
    """Where the image has the colour of the label's boxes (JPEG shifts it by a few levels)."""
    from facemask.detection import MASK_COLOUR, NO_MASK_COLOUR

    colour = np.array(MASK_COLOUR if label == "mask" else NO_MASK_COLOUR)
    return np.abs(np.asarray(image.convert("RGB"), dtype=int) - colour).max(axis=-1) < 40


def new_colour_pixels(result: Image.Image, before: Image.Image, label: str) -> int:
    """How many more pixels of the label's box colour `result` has than `before` (the box and its tag)."""
    return int(box_coloured(result, label).sum() - box_coloured(before, label).sum())


def test_uploaded_photo_is_detected_without_a_click_and_comes_back_boxed_with_a_faces_table(page, app_files, tmp_path):
    from playwright.sync_api import expect

    upload_photo(page, app_files["astronaut.jpg"])  # no button: the upload starts detection
    expect(page.locator("#photo-status textarea")).to_have_value(re.compile(r"^1 face: "))
    expect(face_rows(page)).to_have_count(2)
    row = face_rows(page).nth(1).inner_text()
    label = "no-mask" if "no-mask" in row else "mask"
    assert re.search(r"\d+, \d+, \d+, \d+", row), row

    assert row.split()[0] == "1"  # the face's number, as on its box

    result = annotated_photo(page)
    assert result.size == (512, 512)
    # Pixels of the label's colour appear (the box and its tag) where the uploaded photo had none.
    assert new_colour_pixels(result, astronaut_photo(), label) > 200
    page.locator("#photo-output").screenshot(path=str(tmp_path / "annotated_in_browser.png"))


def test_webcam_snapshot_is_detected(page, tmp_path):
    from playwright.sync_api import expect

    page.get_by_text("Click to Access Webcam").click()
    video = page.locator("#photo-input video")
    expect(video).to_be_visible()
    # Wait for the fake camera's frames to arrive before taking the picture.
    page.wait_for_function("document.querySelector('#photo-input video').videoWidth > 0")
    page.locator("#photo-input button[aria-label='capture photo']").click()
    expect(page.locator("#photo-input img").first).to_be_visible()  # and detection starts by itself
    expect(page.locator("#photo-status textarea")).to_have_value(re.compile(r"^1 face: "))
    expect(face_rows(page)).to_have_count(2)
    assert annotated_photo(page).size == (320, 240)
    page.screenshot(path=str(tmp_path / "webcam_in_browser.png"))


def test_non_image_upload_shows_a_readable_error_and_the_page_recovers(page, app_files):
    from playwright.sync_api import expect

    upload_photo(page, app_files["notes.jpg"])
    expect(page.get_by_text("notes.jpg: not an image (no format Pillow can read)")).to_be_visible()
    # The same page, a real photo next: the server and the page carry on.
    upload_photo(page, app_files["astronaut.jpg"])
    expect(page.locator("#photo-status textarea")).to_have_value(re.compile(r"^1 face: "))


def annotated_video_plays(page, size: tuple[int, int]) -> None:
    """The result's <video> has decoded its first frame: the browser plays the MP4 we wrote."""
    from playwright.sync_api import expect

    expect(page.locator("#video-output video")).to_be_visible()
    page.wait_for_function("document.querySelector('#video-output video').readyState >= 2")
    width, height = page.evaluate("(v => [v.videoWidth, v.videoHeight])(document.querySelector('#video-output video'))")
    assert (width, height) == size


def test_uploaded_video_comes_back_annotated_and_plays(page, app_files):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Video").click()
    page.locator("#video-input button[aria-label='Upload file']").click()
    page.locator("#video-input input[type=file]").set_input_files(str(app_files["clip.mp4"]))
    page.locator("#video-button").click()
    expect(page.locator("#video-status textarea")).to_have_value(re.compile(r"^10 frames \(0\.4 s at 25 fps\)"))
    annotated_video_plays(page, (160, 120))


def start_webcam(page, tab: str, input_id: str, button_label: str):
    """Open `tab`, switch its webcam on and press its start button; returns that button, now "Stop"."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name=tab).click()
    page.locator(f"#{input_id}").get_by_text("Click to Access Webcam").click()
    page.wait_for_function(f"(v => v && v.videoWidth > 0)(document.querySelector('#{input_id} video'))")
    button = page.locator(f"#{input_id} button[aria-label='{button_label}']")  # one button: start, then Stop
    button.click()
    expect(button).to_have_text("Stop")
    return button


def test_webcam_recording_comes_back_annotated(page):
    """MediaRecorder's WebM carries no duration: the app counts frames against the limit instead."""
    from playwright.sync_api import expect

    record = start_webcam(page, "Video", "video-input", "start recording")
    page.wait_for_timeout(600)
    record.click()
    # The page uploads the recording before the input holds it: a click before that sends no video (on a
    # loaded machine the upload takes seconds). Once uploaded, the input plays the server's copy.
    page.wait_for_function("[...document.querySelectorAll('#video-input video')].some(v => v.src.includes('/file='))",
                           timeout=TIMEOUT_MS)
    page.locator("#video-button").click()
    status = page.locator("#video-status textarea")
    expect(status).to_have_value(re.compile(r"^\d+ frames .* [1-9]\d* face boxes drawn"))
    annotated_video_plays(page, (320, 240))


def live_frame_shown(page) -> Image.Image:
    """The frame the Live tab shows now: the app sends each one inline, as a JPEG data URL."""
    import base64

    source = page.locator("#live-output img").first.get_attribute("src")
    assert source.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).convert("RGB")


def test_live_tab_boxes_the_astronaut_on_the_streamed_webcam(page, tmp_path):
    """The real detector (CenterFace, the compact CNN's .onnx) on Chromium's fake camera, streamed by Gradio."""
    from playwright.sync_api import expect

    start = start_webcam(page, "Live", "live-input", "capture photo")
    # She is followed from frame to frame of the stream (the page session's state): one person, in view.
    expect(page.locator("#live-status textarea")).to_have_value(
        re.compile(r"^1 in view now; 1 person seen since the stream started: "))
    summary = page.locator("#live-status textarea").input_value()
    label = "mask" if ": 1 with a mask" in summary else "no-mask"
    frame = live_frame_shown(page)
    assert frame.size == (320, 240)
    page.locator("#live-output").screenshot(path=str(tmp_path / "live_in_browser.png"))
    start.click()  # stop streaming: the live lane is free for the next viewer

    # The page may mirror the webcam: compare with the camera's picture the same way round.
    camera = astronaut_photo((320, 240))
    flipped = camera.transpose(Image.FLIP_LEFT_RIGHT)
    mirrored = difference(frame, flipped) < difference(frame, camera)
    camera = flipped if mirrored else camera
    assert new_colour_pixels(frame, camera, label) > 100
    # The new pixels of the box's colour surround her face: x 97-168, y 50-146 in the camera's picture.
    ys, xs = np.nonzero(box_coloured(frame, label) & ~box_coloured(camera, label))
    centre_x = 319 - np.median(xs) if mirrored else np.median(xs)
    assert 97 <= centre_x <= 168 and 30 <= np.median(ys) <= 146, (centre_x, np.median(ys), mirrored)


def difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=int) - np.asarray(b.convert("RGB"), dtype=int)).mean())
