"""The app under load, as `python -m facemask.app` serves it on 127.0.0.1: bounded, private, tidy.

One burst of 30 photo requests and 2 video requests at once against a queue of 16: every request
is answered or told the queue is full, the server's memory stays under a stated bound, it answers
afterwards, its cached files are readable by its user only. A second burst pastes 12 images of
40 MB as data URLs beside 30 photo uploads: memory stays under the bound and falls back within a
minute (bench/app_memory.py measures the same). Malformed requests are one log line each, an
upload refused for its name leaves nothing behind, and SIGTERM stops the app within seconds and
leaves its cache empty. Every request goes to 127.0.0.1; RSS is read from /proc.
"""

from __future__ import annotations

import stat
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import astronaut_photo, run_app, served_url, write_clip

from bench.app_memory import burst, data_url, noise_png, peak_rss_mb, photos_for, rss_mb, settle, upload_photo

PHOTOS, VIDEOS, QUEUE_SIZE = 30, 2, 16
# Peak resident memory of the server above its resting size (TensorFlow, Gradio and the model: 1.0-1.3 GB,
# by machine). The bursts below measured 0.45-0.85 GB above it on 2-core machines; the bug this guards
# against took the server 2.3-3.3 GB above it. Relative, since the resting size differs between machines.
PEAK_ABOVE_MB = 1200
# After a burst resident memory falls back to within this of what it was before the burst, within this.
# Relative, since the resting size differs between machines (1.2 GB here, 1.5 GB on CI); the bug it guards
# against left the server 2.3 GB above its resting size.
SETTLED_ABOVE_MB, SETTLE_SECONDS = 400, 60
BURST_TIMEOUT = 120  # seconds for the whole burst to be answered; the run stays well under it
STOP_WITHIN = 10.0  # seconds from SIGTERM to exit the test allows; the target is 2 (bench/app_memory.py)


@pytest.fixture(scope="module")
def server(app_model_file, tmp_path_factory):
    """The app in its own process on the first free port, its Gradio cache in a folder of its own; stopped
    with SIGTERM."""
    cache = tmp_path_factory.mktemp("load-cache")
    log = tmp_path_factory.mktemp("load-log") / "app.log"
    with open(log, "w") as stderr:
        process = run_app("--model", str(app_model_file), "--port", "0", "--queue-size", str(QUEUE_SIZE),
                          stderr=stderr, env={"GRADIO_TEMP_DIR": str(cache)})
    try:
        url = served_url(process, log)
        yield {"url": url, "process": process, "cache": cache, "log": log, "resting_mb": rss_mb(process.pid)}
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def outcome(job) -> str:
    """"answered", "busy" (the queue was full), or what else happened."""
    try:
        job.result(timeout=BURST_TIMEOUT)
    except Exception as error:  # gradio_client raises several types; the message is what matters
        return "busy" if "queue is full" in str(error).lower() else f"{type(error).__name__}: {error}"
    return "answered"


@pytest.mark.slow
def test_a_burst_of_requests_is_answered_or_told_busy_within_bounds(server, tmp_path):
    from gradio_client import Client, handle_file

    # A different photo per request, as from different users (identical requests get results of their own:
    # tests/test_app.py).
    photos = []
    for index in range(PHOTOS):
        photos.append(tmp_path / f"astronaut-{index}.jpg")
        astronaut_photo((640, 480)).save(photos[-1], quality=60 + index)
    photo = photos[0]
    clip = write_clip(tmp_path / "clip.mp4", frames=20, fps=25, size=(160, 120))
    client = Client(server["url"], verbose=False, download_files=str(tmp_path / "downloads"),
                    analytics_enabled=False, max_workers=PHOTOS + VIDEOS)
    started = time.monotonic()
    jobs = [client.submit(handle_file(str(path)), api_name="/detect_photo") for path in photos]
    jobs += [client.submit(handle_file(str(clip)), api_name="/detect_video") for _ in range(VIDEOS)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        outcomes = list(pool.map(outcome, jobs))
    elapsed = time.monotonic() - started
    peak = peak_rss_mb(server["process"].pid)
    print(f"\n{outcomes.count('answered')} answered, {outcomes.count('busy')} told busy in {elapsed:.1f} s; "
          f"server peak RSS {peak:.0f} MB")
    assert set(outcomes) <= {"answered", "busy"}, outcomes
    assert outcomes.count("answered") >= QUEUE_SIZE // 2 and len(outcomes) == PHOTOS + VIDEOS
    assert peak < server["resting_mb"] + PEAK_ABOVE_MB, f"resting {server['resting_mb']:.0f} MB"
    # The server still answers, and a request after the burst is never turned away.
    _, table, status = client.predict(handle_file(str(photo)), api_name="/detect_photo")
    assert status.startswith("1 face:")
    # Uploads and results in Gradio's cache are the server user's alone (umask 077).
    cached = [p for p in server["cache"].rglob("*")]
    assert any(p.is_file() for p in cached)
    assert [str(p) for p in cached if stat.S_IMODE(p.stat().st_mode) & 0o077] == []


@pytest.mark.slow
def test_pasted_images_of_40_mb_keep_memory_bounded_and_it_falls_back(server, tmp_path):
    """Finding 6: 12 data URLs of 40-49 MB at once took the server from 1.7 GB to 4-5 GB, and it stayed near 4."""
    pasted = data_url(noise_png(40))
    before = rss_mb(server["process"].pid)
    result = burst(server["url"], server["process"].pid, pasted, photos_for(tmp_path, 30), data_urls=12)
    print(f"\n{result['outcomes'].count('answered')} of {len(result['outcomes'])} answered in "
          f"{result['seconds']:.0f} s; RSS before {before:.0f} MB, peak {result['peak_mb']:.0f} MB")
    assert set(result["outcomes"]) <= {"answered", "busy"}, result["outcomes"]
    assert result["outcomes"][:12].count("answered") >= 6
    assert result["peak_mb"] < server["resting_mb"] + PEAK_ABOVE_MB, f"resting {server['resting_mb']:.0f} MB"
    assert upload_photo(server["url"], photos_for(tmp_path / "after", 1)[0]) == "answered"
    below, samples = settle(server["process"].pid, SETTLE_SECONDS, before + SETTLED_ABOVE_MB)
    assert below is not None, f"RSS before the burst {before:.0f} MB, after it: {samples}"


def gradio_post(url: str, path: str, **kwargs):
    import httpx

    return httpx.post(f"{url.rstrip('/')}/gradio_api{path}", timeout=60, **kwargs)


MALFORMED = [  # (path, JSON body): a file record of the wrong shape, an endpoint that does not exist
    ("/queue/join", {"data": [[1, 2]], "fn_index": 0, "session_hash": "malformed-1"}),
    ("/call/detect_photo", {"data": [[1, 2]]}),
    ("/queue/join", {"data": [None], "fn_index": 999, "session_hash": "malformed-2"}),
]


@pytest.mark.slow
def test_malformed_requests_are_one_log_line_each(server):
    """Finding 10: Gradio logged a whole traceback for each malformed request: one client could fill the log."""
    log = server["log"]
    before = log.read_text()
    for path, body in MALFORMED:
        gradio_post(server["url"], path, json=body)
    time.sleep(3)  # the queue processes the events it accepted
    added = log.read_text()[len(before):]
    assert "Traceback" not in added, added
    lines = added.splitlines()
    assert 1 <= len(lines) <= len(MALFORMED), added
    assert all(line.startswith("error: request failed: ") for line in lines), added


@pytest.mark.slow
def test_an_upload_refused_for_its_name_leaves_no_bytes_behind(server):
    """Finding 7: an upload named `..` was refused with 400, but its bytes stayed in the cache, shutdowns included."""
    refused = gradio_post(server["url"], "/upload", files={"files": ("..", b"x" * 100_000, "image/png")})
    assert refused.status_code == 400
    # Removed at the latest when the app stops (below); the test of the schedule is in test_app.py.


@pytest.mark.slow
def test_sigterm_stops_promptly_and_leaves_the_cache_without_files_or_empty_folders(server):
    process = server["process"]
    sent = time.monotonic()
    process.terminate()
    process.communicate(timeout=60)
    seconds = time.monotonic() - sent
    assert process.returncode == 0, server["log"].read_text()
    assert list(server["cache"].rglob("*")) == []
    assert seconds < STOP_WITHIN, f"stopped {seconds:.1f} s after SIGTERM"
