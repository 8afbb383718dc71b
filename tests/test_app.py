"""The web app through its API (gradio_client) and its command line.

The app runs in this process on a free local port, with a scratch CNN of random weights: these
tests check the plumbing (faces found by MTCNN on a real photo, boxes drawn, tables filled, errors
worded, files cleaned up), not the classifier's accuracy. The numbered boxes, the summary line and
the Live tab's stream endpoint are checked on the app around test doubles (fixed faces, a classifier
that reads colours), whose answers are known in advance. The fixtures are shared with
tests/test_app_browser.py (they live in conftest.py).
"""

from __future__ import annotations

import socket
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from conftest import ROOT, FixedFaces, RecordingModel, run_app, served_url, serving, write_clip
from PIL import Image


@pytest.fixture(scope="module")
def strict_url(app_detector, app_dirs):
    """The app with tiny limits (0.5 MB, 0.2 s, 3 frames) and neither Gradio's upload limit nor RequestGuard.

    What it refuses, the app's own checks refuse: they hold even when the app is launched some other way.
    """
    from dataclasses import replace

    from facemask.app.ui import DEFAULT_VIDEO_LIMITS, AppLimits, build_app

    limits = AppLimits(max_upload_mb=0.5, video=replace(DEFAULT_VIDEO_LIMITS, max_seconds=0.2, max_frames=3))
    with serving(build_app(app_detector, limits), launch_with_limits=False) as url:
        yield url


def client(url: str, tmp_path: Path):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp_path), analytics_enabled=False)


def detect_photo(url: str, photo: Path, tmp_path: Path):
    from gradio_client import handle_file

    return client(url, tmp_path).predict(handle_file(str(photo)), api_name="/detect_photo")


def detect_video(url: str, video: Path, tmp_path: Path):
    from gradio_client import handle_file

    return client(url, tmp_path).predict(handle_file(str(video)), api_name="/detect_video")


def test_photo_endpoint_boxes_the_astronaut(app_url, app_files, tmp_path):
    from facemask.detection import MASK_COLOUR, NO_MASK_COLOUR

    annotated_path, table, status = detect_photo(app_url, app_files["astronaut.jpg"], tmp_path)
    assert table["headers"] == ["face", "label", "P(mask)", "P(no-mask)", "box (x0, y0, x1, y1)"]
    assert len(table["data"]) == 1, table
    index, label, p_mask, p_no_mask, box = table["data"][0]
    assert index == 1 and label in ("mask", "no-mask")
    assert p_mask + p_no_mask == pytest.approx(1.0, abs=0.002)
    assert (label == "mask") == (p_mask >= p_no_mask)
    x0, y0, x1, y1 = (int(v) for v in box.split(","))
    # Her face, in the 512x512 photo: roughly x 180-265, y 60-175.
    assert 150 < x0 < x1 < 300 and 30 < y0 < y1 < 210
    assert status.startswith("1 face:")

    annotated = np.asarray(Image.open(annotated_path).convert("RGB"), dtype=int)
    assert annotated.shape == (512, 512, 3)
    colour = np.array(MASK_COLOUR if label == "mask" else NO_MASK_COLOUR)
    other = np.array(NO_MASK_COLOUR if label == "mask" else MASK_COLOUR)
    # The box's left edge runs down column x0 in the label's colour. JPEG's chroma subsampling blurs a
    # 2 px line into its surroundings, more on some than others (bright skin here): the edge is much
    # nearer the label's colour than the photo was there, and nearer it than the other label's colour.
    rows = slice((y0 + y1) // 2 - 10, (y0 + y1) // 2 + 10)
    edge = annotated[rows, x0]
    photo = np.asarray(Image.open(app_files["astronaut.jpg"]).convert("RGB"), dtype=int)[rows, x0]
    assert np.abs(edge - colour).mean() < np.abs(photo - colour).mean() / 2, edge
    assert (np.abs(edge - colour).sum(axis=1) < np.abs(edge - other).sum(axis=1)).all(), edge


def test_photo_without_a_face_says_so(app_url, app_files, tmp_path):
    annotated_path, table, status = detect_photo(app_url, app_files["grey.png"], tmp_path)
    assert table["data"] == []
    assert status.startswith("No face found")
    assert Image.open(annotated_path).size == (320, 240)


@pytest.mark.parametrize(("name", "words"), [
    ("notes.jpg", "not an image"),
    ("truncated.jpg", "truncated"),
    ("bomb.png", "pixels, over the"),
])
def test_bad_photo_gives_a_readable_error_and_the_server_keeps_serving(app_url, app_files, tmp_path, app_dirs, name,
                                                                       words):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as raised:
        detect_photo(app_url, app_files[name], tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{name}: ") and words in message
    assert str(app_dirs["cache"]) not in message  # the page shows the user's file name, not server paths
    _, table, _ = detect_photo(app_url, app_files["astronaut.jpg"], tmp_path)
    assert len(table["data"]) == 1


def test_video_endpoint_returns_a_browser_playable_mp4(app_url, app_files, tmp_path, app_dirs):
    video_path, status = detect_video(app_url, app_files["clip.mp4"], tmp_path)
    assert Path(video_path).suffix == ".mp4"
    with imageio.get_reader(video_path, format="FFMPEG") as reader:
        meta = reader.get_meta_data()
        frames = [frame for frame in reader]
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert len(frames) == 10 and frames[0].shape == (120, 160, 3)
    assert meta["fps"] == pytest.approx(25)
    assert status.startswith("10 frames (0.4 s at 25 fps)")
    # The working folder of the request is gone; the result lives only in Gradio's cache.
    assert not list(app_dirs["tmp"].glob("facemask-*"))


def test_bad_video_gives_a_readable_error(app_url, app_files, tmp_path, app_dirs):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"^notes\.jpg: not a readable video"):
        detect_video(app_url, app_files["notes.jpg"], tmp_path)
    assert not list(app_dirs["tmp"].glob("facemask-*"))


def test_limits_on_video_length_and_upload_size(strict_url, app_files, tmp_path, app_dirs):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"^clip\.mp4: the video lasts 0\.4 s, over the 0\.2 s limit"):
        detect_video(strict_url, app_files["clip.mp4"], tmp_path)
    with pytest.raises(AppError, match=r"^noise\.png: 0\.7 MB is over the 0\.5 MB limit"):
        detect_photo(strict_url, app_files["noise.png"], tmp_path)
    assert not list(app_dirs["tmp"].glob("facemask-*"))


def test_no_input_asks_for_one(app_url, tmp_path):
    from gradio_client.exceptions import AppError

    # Detection runs whenever the photo changes, clearing it included: that clears the results, no error.
    annotated, table, summary = client(app_url, tmp_path).predict(None, api_name="/detect_photo")
    assert annotated is None and table["data"] == [] and summary.startswith("No photo yet")
    with pytest.raises(AppError, match="^No video yet"):
        client(app_url, tmp_path).predict(None, api_name="/detect_video")


def test_launch_limits_uploads_in_gradio_too_and_keeps_no_run_history(app_url):
    import httpx

    config = httpx.get(f"{app_url.rstrip('/')}/config", timeout=10).json()
    assert config["max_file_size"] == 50 * 1024 * 1024
    assert config["run_history"] is False


def test_the_app_writes_nothing_into_its_package(app_url):
    # Gradio writes a .pyi stub beside the module of any gr.Component subclass; the app has none.
    assert not list((ROOT / "facemask").rglob("*.pyi"))


def test_concurrent_requests_are_queued_and_all_answered(app_url, app_files, tmp_path):
    from gradio_client import handle_file

    api = client(app_url, tmp_path)
    jobs = [api.submit(handle_file(str(app_files["astronaut.jpg"])), api_name="/detect_photo") for _ in range(3)]
    jobs.append(api.submit(handle_file(str(app_files["clip.mp4"])), api_name="/detect_video"))
    assert [len(job.result(timeout=300)[1]["data"]) for job in jobs[:3]] == [1, 1, 1]
    assert jobs[3].result(timeout=300)[1].startswith("10 frames")


def test_main_refuses_an_unreadable_model_before_serving(tmp_path, capsys):
    from facemask.app.__main__ import main

    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_text("not a model\n")
    assert main(["--model", str(corrupt), "--port", "0"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {corrupt}: not a readable Keras model")


def test_main_reports_a_taken_port(app_model_file, capsys):
    from facemask.app.__main__ import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--model", str(app_model_file), "--port", str(port)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot serve on 127.0.0.1:{port}: ")


@pytest.mark.slow
def test_command_line_refuses_a_missing_model_and_serves_a_good_one(app_model_file, tmp_path):
    """Two processes at once: each imports TensorFlow and Gradio, which takes a while on two cores."""
    import httpx

    missing = tmp_path / "missing.keras"
    log = (tmp_path / "app.log").open("w")  # a file, not a pipe: nobody reads it while the app runs
    refused = run_app("--model", str(missing))
    good = run_app("--model", str(app_model_file), "--port", "0", stderr=log)  # 0: the first free port
    try:
        _, stderr = refused.communicate(timeout=240)
        assert refused.returncode == 1
        assert stderr.strip().splitlines()[-1] == f"error: model file not found: {missing}"
        # The app prints its URL, with the port it took, once it serves (and once SIGTERM is handled).
        url = served_url(good, tmp_path / "app.log")
        config = httpx.get(f"{url}config", timeout=10)
        assert config.status_code == 200 and config.json()["title"] == "Face mask detection"
        good.terminate()  # SIGTERM: the app stops as on Ctrl+C
        good.communicate(timeout=60)
        assert good.returncode == 0
    finally:
        for process in (refused, good):
            if process.poll() is None:
                process.kill()
                process.communicate()
        log.close()


# --- hostile requests, sent raw as any HTTP client can ----------------------------------------------

FILE_META = {"_type": "gradio.FileData"}


def call(url: str, api_name: str, data: list, timeout: float = 120) -> tuple[int, str]:
    """POST /gradio_api/call/<api_name>, then follow its event stream; (HTTP status, what came back).

    What came back: the refusal's JSON detail when the POST is refused, else "error: <message>" or
    "complete: <the outputs as JSON>".
    """
    import json

    import httpx

    base = url.rstrip("/")
    posted = httpx.post(f"{base}/gradio_api/call/{api_name}", json={"data": data}, timeout=timeout)
    if posted.status_code != 200:
        return posted.status_code, posted.json()["detail"]
    event, payload = "", ""
    with httpx.stream("GET", f"{base}/gradio_api/call/{api_name}/{posted.json()['event_id']}",
                      timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                payload = line.split(":", 1)[1].strip()
                if event in ("complete", "error"):
                    break
    value = json.loads(payload) if payload else None
    return 200, f"{event}: {value['error'] if event == 'error' and isinstance(value, dict) else payload}"


@pytest.fixture(scope="module")
def outside_paths(app_files, app_dirs) -> dict[str, str]:
    """An image the server can read but nobody uploaded, a path that does not exist, one climbing out."""
    return {"existing image": str(app_files["astronaut.jpg"]),
            "missing file": str(app_files["astronaut.jpg"].parent / "missing.png"),
            "climbing out": f"{app_dirs['cache']}/../{app_files['astronaut.jpg'].parent.name}/astronaut.jpg",
            "relative": "astronaut.jpg",
            "url": "http://files.example.invalid/astronaut.jpg"}


@pytest.mark.parametrize("with_meta", [False, True])
def test_a_path_outside_the_uploads_is_refused_unopened_and_unnamed(app_url, outside_paths, with_meta, monkeypatch):
    """The request the issue reproduced: a file record without "meta" made the app read any image on the server."""
    import socket

    from facemask.app import uploads
    from facemask.app.uploads import REFUSED

    looked_up, opened = [], []
    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host) or real_getaddrinfo(
        host, *a, **k))
    monkeypatch.setattr(uploads, "file_paths", spy_on(uploads.file_paths, opened))
    answers = set()
    for path in outside_paths.values():
        record = {"path": path, **({"meta": FILE_META} if with_meta else {})}
        answers.add(call(app_url, "detect_photo", [record]))
        answers.add(call(app_url, "detect_video", [record]))
        answers.add(call(app_url, "detect_live", [record]))
    # One answer for all: nothing tells whether the file exists, what it is or how big.
    assert answers == {(400, REFUSED)}
    assert "app_files.example.invalid" not in looked_up  # the URL was not even resolved
    assert opened  # RequestGuard read every request


def spy_on(function, calls: list):
    def spied(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)

    return spied


def test_the_app_itself_refuses_outside_paths_without_the_request_guard(strict_url, outside_paths, monkeypatch):
    """Behind a plain demo.launch, the inputs' own checks refuse the same paths, before touching them."""
    import builtins
    import os

    from facemask.app.uploads import REFUSED

    touched = []
    watched = {p for name, p in outside_paths.items() if name != "url"}
    real_open, real_stat = builtins.open, os.stat

    def watching_open(file, *args, **kwargs):
        if str(file) in watched:
            touched.append(("open", file))
        return real_open(file, *args, **kwargs)

    def watching_stat(path, *args, **kwargs):
        if str(path) in watched:
            touched.append(("stat", path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching_open)
    monkeypatch.setattr(os, "stat", watching_stat)
    for name, path in outside_paths.items():
        if name == "url":
            continue  # Gradio itself fetches URLs before any app code runs: only RequestGuard stops those
        assert call(strict_url, "detect_photo", [{"path": path}]) == (200, f"error: {REFUSED}")
        assert call(strict_url, "detect_live", [{"path": path}]) == (200, f"error: {REFUSED}")
        # With "meta", Gradio checks (and resolves) the path itself before the app runs: RequestGuard stops that.
        assert call(strict_url, "detect_video", [{"path": path}])[1].startswith("error:")
    assert touched == []


def data_url(path: Path, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def test_a_data_url_photo_is_detected(app_url, app_files):
    status, answer = call(app_url, "detect_photo", [{"url": data_url(app_files["astronaut.jpg"], "image/jpeg")}])
    assert status == 200 and answer.startswith("complete:") and '"1 face:' in answer


def test_data_urls_meet_the_byte_and_pixel_limits_before_decoding(strict_url, app_files, app_dirs):
    before = sorted(app_dirs["cache"].rglob("*"))
    # 0.7 MB, over the strict app's 0.5 MB: refused from the URL's length, before base64 decoding.
    assert call(strict_url, "detect_photo", [{"url": data_url(app_files["noise.png"])}]) == (
        200, "error: the pasted image: 0.7 MB is over the 0.5 MB limit")
    # A few kB of PNG that would decode to 50 megapixels: refused from its header.
    status, answer = call(strict_url, "detect_photo", [{"url": data_url(app_files["bomb.png"])}])
    assert answer.startswith('error: the pasted image: 10000x5000 is 50,000,000 pixels, over the 40,000,000 limit')
    assert call(strict_url, "detect_photo", [{"url": "data:image/png;base64,@@@@"}])[1].startswith(
        'error: the pasted image: not valid base64')
    assert sorted(app_dirs["cache"].rglob("*")) == before  # nothing was decoded into Gradio's cache


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(app_url, app_files):
    """A 55 MB PNG as a data URL is a 74 MB JSON body: refused from its length (HTTP 413), not parsed."""
    import httpx

    body_size = 74 * 1024 * 1024
    with httpx.Client(timeout=120) as http:
        refused = http.post(f"{app_url.rstrip('/')}/gradio_api/call/detect_photo",
                            content=b'{"data": [{"url": "data:image/png;base64,' + b"A" * body_size + b'"}]}',
                            headers={"content-type": "application/json"})
    assert refused.status_code == 413 and refused.json()["detail"] == "The request is over the size limit of this app."
    assert call(app_url, "detect_photo", [{"url": data_url(app_files["astronaut.jpg"], "image/jpeg")}])[1].startswith(
        "complete:")  # and the server still serves


def test_video_limits_on_frames(strict_url, tmp_path):
    from gradio_client.exceptions import AppError

    clip = write_clip(tmp_path / "short.mp4", frames=5, fps=30, size=(160, 120))  # 0.17 s, under 0.2 s, but 5 frames
    with pytest.raises(AppError, match=r"^short\.mp4: 5 frames at 30 fps, over the 3 frame limit"):
        detect_video(strict_url, clip, tmp_path)


def test_a_high_frame_rate_video_is_sampled_and_says_so(app_url, tmp_path):
    import re

    clip = write_clip(tmp_path / "fast.mp4", frames=240, fps=240, size=(160, 120))  # 1 s at 240 fps
    _, status = detect_video(app_url, clip, tmp_path)
    # 30 frames, or a few more: ffmpeg's rate conversion may hold the last frame a little longer.
    assert re.match(r"^3[0-3] frames \(1\.[01] s at 30 fps\)", status) and "Sampled from 240 fps." in status, status


@pytest.mark.parametrize(("option", "value"), [("--max-upload-mb", "0"), ("--max-video-fps", "-1"),
                                               ("--max-video-frames", "0"), ("--max-frame-pixels", "many"),
                                               ("--max-video-seconds", "inf"), ("--queue-size", "0"),
                                               ("--max-live-seconds", "1.5")])
def test_main_refuses_bad_limits_in_one_error_line(capsys, option, value):
    from facemask.app.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--model", "never-loaded.keras", option, value])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exited.value.code == 2 and len(lines) == 1 and option in lines[0] and repr(value) in lines[0]


def test_limits_from_the_command_line():
    from facemask.app.__main__ import limits_from, parse_args

    limits = limits_from(parse_args(["--model", "m.keras", "--max-upload-mb", "20", "--max-video-fps", "15",
                                     "--max-video-frames", "300", "--max-frame-pixels", "2073600",
                                     "--max-video-seconds", "30", "--queue-size", "8", "--max-live-seconds", "20"]))
    assert (limits.max_upload_mb, limits.queue_size, limits.live_seconds) == (20, 8, 20)
    assert (limits.video.max_fps, limits.video.max_frames, limits.video.max_frame_pixels,
            limits.video.max_seconds, limits.video.max_frame_side) == (15, 300, 2_073_600, 30, 1920)


@pytest.mark.parametrize(("given", "served"), [([], 0.25), (["--margin", "0.05"], 0.05)])
def test_faces_are_cropped_with_the_models_margin_unless_told(monkeypatch, tmp_path, given, served):
    # The margin the model's training crops were cut with (its sidecar's) is the app's; --margin overrides it.
    from conftest import build_colour_model

    from facemask.app import __main__ as app
    from facemask.models import save_model

    model = save_model(build_colour_model(), tmp_path / "wide.keras", margin=0.25)
    monkeypatch.setattr(app, "make_face_detector", lambda name: FixedFaces())
    served_with = []
    monkeypatch.setattr(app, "serve", lambda detector, limits, args: served_with.append(detector.margin) or 0)
    assert app.main(["--model", str(model), *given]) == 0
    assert served_with == [served]


# --- numbered boxes, the summary line and live frames, with a fake face detector and classifier ----

# The boxes the fake face detector finds in any image it is given, on a 320x160 photo painted so that
# the fake classifier (P(mask) from green against red) sees a mask, a bare face, a mask.
FAKE_FACES = ((10, 30, 80, 110), (120, 30, 190, 110), (230, 30, 300, 110))
FAKE_LABELS = ["mask", "no-mask", "mask"]


def scaled(box: tuple[int, ...], scale: float) -> tuple[int, ...]:
    return tuple(round(v * scale) for v in box)


def painted_photo(path: Path, scale: float = 1) -> Path:
    """The 320x160 photo of FAKE_FACES, or the same scaled (a video frame is searched at 320x160)."""
    from PIL import ImageDraw

    image = Image.new("RGB", (round(320 * scale), round(160 * scale)), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for box, label in zip(FAKE_FACES, FAKE_LABELS, strict=True):
        draw.rectangle(scaled(box, scale), fill=(40, 220, 40) if label == "mask" else (220, 40, 40))
    image.save(path)
    return path


@pytest.fixture(scope="module")
def fake_app(app_dirs):
    """The app around doubles: three fixed faces, classified by their colour; fast, and known in advance."""
    from facemask.app.ui import build_app
    from facemask.detection import FaceMaskDetector

    faces = FixedFaces(*FAKE_FACES)
    with serving(build_app(FaceMaskDetector(RecordingModel(), face_detector=faces))) as url:
        yield {"url": url, "faces": faces}


def box_edges_colours(image: Image.Image, scale: float = 1) -> list[str]:
    """The label each FAKE_FACES box is drawn for, read from the colour of its left edge."""
    from facemask.detection import MASK_COLOUR, NO_MASK_COLOUR

    pixels = np.asarray(image.convert("RGB"), dtype=int)
    found = []
    for x0, y0, _, y1 in (scaled(box, scale) for box in FAKE_FACES):
        edge = pixels[(y0 + y1) // 2, x0]
        found.append("mask" if np.abs(edge - MASK_COLOUR).max() < 60 else
                     "no-mask" if np.abs(edge - NO_MASK_COLOUR).max() < 60 else "none")
    return found


def test_every_box_carries_the_number_of_its_row_in_the_faces_table(fake_app, tmp_path, drawn_texts):
    annotated_path, table, _ = detect_photo(fake_app["url"], painted_photo(tmp_path / "three.png"), tmp_path)
    rows = table["data"]
    assert [row[0] for row in rows] == [1, 2, 3]
    assert [row[1] for row in rows] == FAKE_LABELS
    assert [row[4] for row in rows] == [", ".join(map(str, box)) for box in FAKE_FACES]
    # The label on box n is "n <its row's label> <its row's probability>".
    assert drawn_texts == [f"{face} {label} {max(p_mask, p_no_mask):.0%}" for face, label, p_mask, p_no_mask, _ in rows]
    assert box_edges_colours(Image.open(annotated_path)) == FAKE_LABELS


def test_the_summary_counts_faces_with_and_without_a_mask(fake_app, tmp_path):
    _, _, summary = detect_photo(fake_app["url"], painted_photo(tmp_path / "three.png"), tmp_path)
    assert summary == "3 faces: 2 with a mask (green), 1 without (red)."


def live_frame(url: str, frame: Path, mime: str = "image/png") -> tuple[Image.Image, str]:
    """One frame through the Live tab's stream endpoint, sent as the page sends it: a data URL. Each call is a
    stream of its own (the stream's persons are the page session's state; test_live_persons_* follows them)."""
    import base64
    import io
    import json

    status, answer = call(url, "detect_live", [{"url": data_url(frame, mime)}])
    assert status == 200 and answer.startswith("complete:"), answer
    record, summary, state = json.loads(answer.split(":", 1)[1])
    assert state is None  # the stream's tracker stays on the server
    # The frame comes back inline, not as a file in Gradio's cache.
    assert record["path"] is None and record["url"].startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(record["url"].split(",", 1)[1]))), summary


def test_a_live_frame_comes_back_with_its_counts_without_touching_the_cache(fake_app, tmp_path, app_dirs,
                                                                           drawn_texts):
    from facemask.video import VIDEO_MAX_SIDE

    before = sorted(app_dirs["cache"].rglob("*"))
    frame = painted_photo(tmp_path / "frame.png", scale=2)
    annotated, summary = live_frame(fake_app["url"], frame)
    # A face is a person from the second frame the tracker has seen it on: nothing boxed or counted yet.
    assert summary == "0 in view now; 0 people seen since the stream started: 0 with a mask (green), 0 without (red)."
    difference = np.abs(np.asarray(annotated, dtype=int) - np.asarray(Image.open(frame).convert("RGB"), dtype=int))
    assert annotated.size == (640, 320) and difference.mean() < 2 and drawn_texts == []  # but for JPEG's losses
    # Faces were looked for on a small copy of the frame, as in videos.
    assert fake_app["faces"].shapes[-1] == (VIDEO_MAX_SIDE // 2, VIDEO_MAX_SIDE, 3)
    assert fake_app["faces"].upscales[-1] is False  # a copy shrunk for speed, not to be enlarged again
    assert sorted(app_dirs["cache"].rglob("*")) == before


def live_function(faces: FixedFaces):
    """The Live tab's stream function of an app around doubles, called as Gradio calls it for each frame of a
    page's stream: (frame, the session's state) -> (annotated frame, summary, the new state)."""
    from facemask.app.ui import build_app
    from facemask.detection import FaceMaskDetector

    demo = build_app(FaceMaskDetector(RecordingModel(), face_detector=faces))
    return next(fn.fn for fn in demo.fns.values() if fn.api_name == "detect_live")


def test_live_persons_are_followed_numbered_and_counted_across_a_stream(tmp_path, drawn_texts):
    import time

    import facemask.app.live
    from facemask.app.live import LIVE_FPS
    from facemask.tracking import DEFAULT_LOST_SECONDS

    faces = FixedFaces(*FAKE_FACES)
    detect_live = live_function(faces)
    frame = painted_photo(tmp_path / "frame.png", scale=2).read_bytes()  # as a pasted frame reaches it
    annotated, summary, state = detect_live(frame, None)
    assert summary.startswith("0 in view now; 0 people seen") and drawn_texts == []
    for _ in range(2):
        annotated, summary, state = detect_live(frame, state)
    assert summary == "3 in view now; 3 people seen since the stream started: 2 with a mask (green), 1 without (red)."
    assert box_edges_colours(annotated, scale=2) == FAKE_LABELS
    # Each box carries its person's number and the label of their frames so far.
    assert sorted(text.split(" ")[:2] for text in drawn_texts[-3:]) == [["1", "mask"], ["2", "no-mask"],
                                                                         ["3", "mask"]]
    # Two leave; the one who stays keeps their number, the two who left stay counted.
    faces.faces = faces.faces[:1]
    deadline = time.monotonic() + DEFAULT_LOST_SECONDS + 3  # the tracker keeps a lost face this long (2 s)
    while not summary.startswith("1 in view") and time.monotonic() < deadline:
        time.sleep(1 / LIVE_FPS)  # frames at the rate a live stream's are answered
        annotated, summary, state = detect_live(frame, state)
    assert summary == "1 in view now; 3 people seen since the stream started: 2 with a mask (green), 1 without (red)."
    assert drawn_texts[-1].split(" ")[:2] == ["1", "mask"]
    # Another viewer's stream (no state yet) is a stream of its own.
    assert detect_live(frame, None)[1].startswith("0 in view now; 0 people seen")
    # After a pause of the webcam, the count starts again.
    state.last_frame -= facemask.app.live.NEW_STREAM_SECONDS + 1
    _, summary, restarted = detect_live(frame, state)
    assert restarted is not state and summary.startswith("0 in view now; 0 people seen")


def test_live_frames_meet_the_video_frame_limits(fake_app, tmp_path):
    from facemask.app.ui import DEFAULT_VIDEO_LIMITS

    # 10 megapixels: under a photo's 40, over a video frame's 8.3; refused from the header, before decoding.
    over = tmp_path / "over.png"
    Image.new("1", (4000, 2500)).save(over)
    assert call(fake_app["url"], "detect_live", [{"url": data_url(over)}]) == (
        200, "error: the webcam frame: 4000x2500 is 10,000,000 pixels, over the "
             f"{DEFAULT_VIDEO_LIMITS.max_frame_pixels:,} limit")
    # A large frame within the limit is worked on, and sent back, at the video frame size limit.
    large = painted_photo(tmp_path / "large.png", scale=7.5)  # 2400x1200
    annotated, _ = live_frame(fake_app["url"], large)
    assert annotated.size == (DEFAULT_VIDEO_LIMITS.max_frame_side, DEFAULT_VIDEO_LIMITS.max_frame_side // 2)
    # Not an image: a readable error, and the next frame is served.
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a frame")
    assert call(fake_app["url"], "detect_live", [{"url": data_url(notes, "image/jpeg")}]) == (
        200, "error: the webcam frame: not an image (no format Pillow can read)")
    assert live_frame(fake_app["url"], painted_photo(tmp_path / "frame.png", scale=2))[1].startswith("0 in view now")


# --- results, the cache --------------------------------------------------------------------------------


def test_identical_requests_get_results_of_their_own(app_url, app_files):
    """Finding 8: two users sending the same photo shared one result file, which Gradio rewrote in place while
    the other downloaded it (0 bytes, or cut short)."""
    import io
    import json
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    photo = {"url": data_url(app_files["astronaut.jpg"], "image/jpeg")}
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: call(app_url, "detect_photo", [photo]), range(3)))
    assert all(status == 200 and answer.startswith("complete: ") for status, answer in answers), answers
    results = [json.loads(answer.removeprefix("complete: "))[0] for _, answer in answers]
    assert len({result["path"] for result in results}) == 3  # three files, one per request
    for result in results:
        download = httpx.get(f"{app_url.rstrip('/')}/gradio_api/file={result['path']}", timeout=60)
        assert download.status_code == 200
        Image.open(io.BytesIO(download.content)).load()  # whole


def test_the_cache_sweep_removes_old_files_orphans_included_and_their_empty_folders(tmp_path):
    """Finding 7, on a schedule: what Gradio does not know it stored (a refused upload's bytes) goes too."""
    import os
    import time

    from facemask.app.uploads import CacheSweeper, sweep_cache

    old, fresh = tmp_path / "tmpab12cd", tmp_path / "hash" / "photo.jpg"
    fresh.parent.mkdir()
    (tmp_path / "empty-old").mkdir()
    old.write_bytes(b"an upload refused for its name")
    fresh.write_bytes(b"a photo uploaded a minute ago")
    hours_ago = time.time() - 7200
    for path in (old, tmp_path / "empty-old"):
        os.utime(path, (hours_ago, hours_ago))
    sweep_cache(tmp_path, max_age=3600)
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == ["hash", "hash/photo.jpg"]
    os.utime(fresh, (hours_ago, hours_ago))
    sweeper = CacheSweeper(tmp_path, every=0.05, max_age=3600)
    try:
        deadline = time.monotonic() + 10
        while fresh.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sweeper.stop()
    assert list(tmp_path.iterdir()) == []


# --- what RequestGuard holds (finding 6) -----------------------------------------------------------------


def test_a_large_data_url_waits_in_the_queue_as_a_file_and_other_large_bodies_are_refused(tmp_path, monkeypatch):
    import base64
    import json

    from facemask.app import uploads

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    data = np.random.default_rng(0).integers(0, 256, 2 * uploads.MB, dtype=np.uint8).tobytes()
    pasted = {"data": [{"url": "data:image/png;base64," + base64.b64encode(data).decode()}], "fn_index": 0}
    status, body = uploads.checked_body(json.dumps(pasted).encode(), max_upload=10 * uploads.MB)
    assert status == 200 and len(body) < 1000  # what Gradio's queue keeps
    (record,) = json.loads(body)["data"]
    assert uploads.is_uploaded(record["path"]) and Path(record["path"]).read_bytes() == data
    assert record["meta"] == {"_type": "gradio.FileData"} and uploads.is_pasted(record["path"])
    bulky = {"data": ["x" * (2 * uploads.MB)], "fn_index": 0}
    assert uploads.checked_body(json.dumps(bulky).encode(), 10 * uploads.MB)[0] == 413
    broken = {"data": [{"url": "data:image/png;base64," + "@" * (2 * uploads.MB)}]}
    status, message = uploads.checked_body(json.dumps(broken).encode(), 10 * uploads.MB)
    assert status == 400 and message.decode().startswith("the pasted image: not valid base64")


def test_a_body_that_does_not_arrive_in_time_gives_back_its_share_of_the_budget(monkeypatch):
    import asyncio

    from facemask.app import uploads

    monkeypatch.setattr(uploads, "BODY_SECONDS", 0.2)
    guard = uploads.RequestGuard(app=None, max_body=10 * uploads.MB)
    sent = []

    async def receive():
        await asyncio.sleep(3600)  # a client that declared 5 MB and sends nothing

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join",
             "headers": [(b"content-length", str(5 * uploads.MB).encode())]}
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 408 and guard.budget.used == 0
