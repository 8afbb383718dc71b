"""The app under load, as `python -m facemask.app` serves it on 127.0.0.1: bounded, private, tidy.

One burst of 30 photo requests and 2 video requests at once against a queue of 16: every request
is answered or told the queue is full, the server's memory stays under a stated bound, it answers
afterwards, its cached files are readable by its user only, and SIGTERM leaves its cache empty.
"""

from __future__ import annotations

import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import astronaut_photo, run_app, served_url, write_clip

PHOTOS, VIDEOS, QUEUE_SIZE = 30, 2, 16
# Peak resident memory of the server: TensorFlow, Gradio and the model take about 1 GB at rest here
# and the burst measured 1.1 GB at its peak.
RSS_BOUND_MB = 2000
BURST_TIMEOUT = 120  # seconds for the whole burst to be answered; the run stays well under it


def peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


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
        yield {"url": url, "process": process, "cache": cache, "log": log}
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

    # A different photo per request, as from different users: Gradio caches an output under a hash of
    # its content, so 30 identical results would be rewritten in one cache file while others download
    # it (seen once: a download cut short, 0 of 32,267 bytes).
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
    assert peak < RSS_BOUND_MB
    # The server still answers, and a request after the burst is never turned away.
    _, table, status = client.predict(handle_file(str(photo)), api_name="/detect_photo")
    assert status.startswith("1 face:")
    # Uploads and results in Gradio's cache are the server user's alone (umask 077).
    cached = [p for p in server["cache"].rglob("*")]
    assert any(p.is_file() for p in cached)
    assert [str(p) for p in cached if stat.S_IMODE(p.stat().st_mode) & 0o077] == []


@pytest.mark.slow
def test_sigterm_leaves_the_cache_without_files_or_empty_folders(server):
    process = server["process"]
    process.terminate()
    process.communicate(timeout=60)
    assert process.returncode == 0, server["log"].read_text()
    assert list(server["cache"].iterdir()) == []
