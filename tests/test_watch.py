"""facemask.watch and its parts: streams read by ffmpeg, persons tracked, events and counts written whole.

The stream tests serve real streams on 127.0.0.1 (ffmpeg's HTTP server, and Debian's
rtsp-server-perl, which `make test` installs) and run the watch as its own process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
import pytest
from conftest import ASTRONAUT_FACE, ROOT, astronaut_photo, write_clip
from PIL import Image

from facemask import watch
from facemask.records import LineFile, check_output_file
from facemask.streams import MAX_PENDING, Frame, FrameReader, StreamError, StreamLimits, check_source, parse_source
from facemask.tracking import TRACKERS, LibraryTracks, PersonTracker

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
COUNTS_HEADER = "start,end,people,mask,no_mask,frames,dropped"


# ---------------------------------------------------------------- clips with a known number of people

def face_picture(height: int) -> Image.Image:
    """The astronaut's head (her face box widened 35% on every side), `height` px high."""
    x0, y0, x1, y1 = ASTRONAUT_FACE
    dx, dy = 0.35 * (x1 - x0), 0.35 * (y1 - y0)
    head = astronaut_photo().crop((round(x0 - dx), round(y0 - dy), round(x1 + dx), round(y1 + dy)))
    return head.resize((round(height * head.width / head.height), height), Image.BICUBIC)


def write_visits(path: Path, visits: list[tuple[int, int, int]], frames: int, fps: int = 15,
                 size: tuple[int, int] = (320, 240), slowness: int = 1) -> Path:
    """A clip on a grey background where each visit (first frame, last frame, x) shows a face walking
    down-right a pixel every `slowness` frames: as many people as visits, if visits at one x do not overlap."""
    head = face_picture(110)
    # A key frame every second, so that a client joining a live stream starts decoding within one.
    with imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                            ffmpeg_log_level="error", output_params=["-g", str(fps)]) as writer:
        for n in range(frames):
            frame = Image.new("RGB", size, (120, 120, 120))
            for first, last, x in visits:
                if first <= n <= last:
                    step = (n - first) // slowness
                    frame.paste(head, (x + step, 40 + step // 2))
            writer.append_data(np.asarray(frame))
    return path


@pytest.fixture(scope="module")
def three_people(tmp_path_factory) -> Path:
    """Three visits, two of them at once, with gaps of 2 s (longer than a track is kept): 3 people."""
    return write_visits(tmp_path_factory.mktemp("clips") / "three.mp4",
                        [(0, 25, 10), (55, 80, 10), (55, 80, 180)], frames=100)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """30 s of one face walking slowly, in view from the first frame to the last: one person."""
    return write_visits(tmp_path_factory.mktemp("clips") / "long.mp4", [(0, 449, 10)], frames=450, slowness=3)


# ---------------------------------------------------------------- the source and the stream reader

def test_sources_are_told_apart_and_foreign_urls_refused():
    assert parse_source("rtsp://cam.local/stream").kind == "url"
    assert parse_source("udp://@:1234").kind == "url"
    assert parse_source("/dev/video0").kind == "device"
    assert parse_source("clip.mp4").kind == "file"
    for bad in ("ftp://host/x.mp4", "file:///etc/passwd", "http:///no-host"):
        with pytest.raises(ValueError):
            parse_source(bad)


def test_a_password_in_a_url_is_never_shown():
    source = parse_source("rtsp://admin:secret@cam.example:554/stream")
    assert source.name == "rtsp://***@cam.example:554/stream" and "secret" in source.target


def test_local_sources_are_checked_before_anything_starts(tmp_path):
    assert check_source(parse_source("/dev/video-none")) == "/dev/video-none: no such device"
    assert check_source(parse_source(str(tmp_path / "none.mp4"))).endswith("file not found")
    assert check_source(parse_source(str(tmp_path))).endswith("not a regular file")


def read_all(reader: FrameReader) -> list:
    frames = []
    while True:
        try:
            frame = reader.next_frame(20)
        except StreamError as error:
            assert str(error).endswith("the stream ended")
            return frames
        assert frame is not None
        frames.append(frame)


def test_a_file_gives_every_frame_with_its_timestamps(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=12, fps=12, size=(320, 240))
    reader = FrameReader(parse_source(str(clip)), keep_all=True)
    info = reader.open(20)
    try:
        frames = read_all(reader)
    finally:
        reader.close()
    assert info.size == (320, 240)
    assert [f.index for f in frames] == list(range(12))
    assert [round(f.pts * 12) for f in frames] == list(range(12))
    assert all(f.rgb.shape == (240, 320, 3) for f in frames) and reader.dropped == 0


def test_large_frames_are_scaled_by_ffmpeg_and_huge_ones_refused(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=3, fps=10, size=(320, 240))
    reader = FrameReader(parse_source(str(clip)), StreamLimits(max_frame_side=160), keep_all=True)
    reader.open(20)
    try:
        assert {f.rgb.shape for f in read_all(reader)} == {(120, 160, 3)}
    finally:
        reader.close()
    refusing = FrameReader(parse_source(str(clip)), StreamLimits(max_frame_pixels=320 * 240 - 1))
    with pytest.raises(StreamError, match=r"320x240, 76,800 pixels, over the 76,799 limit"):
        refusing.open(20)


def test_a_high_frame_rate_is_sampled_down(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=30, fps=60, size=(160, 120))
    reader = FrameReader(parse_source(str(clip)), StreamLimits(max_fps=15), keep_all=True)
    reader.open(20)
    try:
        frames = read_all(reader)
    finally:
        reader.close()
    assert 7 <= len(frames) <= 9  # half a second at 15 frames/s


def test_live_reading_with_no_lag_keeps_the_newest_frame_and_counts_the_dropped(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=30, fps=30, size=(160, 120))
    reader = FrameReader(parse_source(str(clip)), keep_all=False, max_lag=0)
    reader.open(20)
    try:
        time.sleep(2)  # a slow consumer: the whole clip arrives meanwhile
        frame = reader.next_frame(5)
    finally:
        reader.close()
    assert frame.index == 29 and reader.dropped == 29 and reader.received == 30


def arriving(reader: FrameReader, ages: list[float], catch_up: bool = False) -> list[int]:
    """Frames published as if they had arrived these many seconds ago (no ffmpeg), then every index the
    consumer is given."""
    now = time.monotonic()
    for index, age in enumerate(ages):
        reader._publish(Frame(np.zeros((2, 2, 3), np.uint8), index, index / 15, now - age))
    if catch_up:
        reader.catch_up()
    reader._finished = True
    taken = []
    with pytest.raises(StreamError):
        while True:
            taken.append(reader.next_frame(0.1).index)
    return taken


def live_reader(max_lag: float) -> FrameReader:
    return FrameReader(parse_source("clip.mp4"), keep_all=False, max_lag=max_lag)


def test_live_reading_keeps_a_burst_and_drops_what_lags_more_than_max_lag(monkeypatch):
    monkeypatch.setattr(FrameReader, "ending", lambda self: "ended")
    # Three frames in a burst (2 ms apart), as streams deliver them: all kept, in order, none dropped.
    burst = live_reader(0.25)
    assert arriving(burst, [0.004, 0.002, 0.0]) == [0, 1, 2] and burst.dropped == 0
    # A consumer that took nothing for a second: only the frames of the last 0.25 s are left.
    slow = live_reader(0.25)
    assert arriving(slow, [1 - i / 15 for i in range(16)]) == [12, 13, 14, 15] and slow.dropped == 12
    # Frames close together but all waiting for too long (processing stalled): only the newest is taken.
    stalled = live_reader(0.25)
    assert arriving(stalled, [1.0, 0.9, 0.8]) == [2] and stalled.dropped == 2
    # However close together they came, never more than MAX_PENDING frames are held (memory stays bounded).
    flood = live_reader(60)
    assert arriving(flood, [0.0] * 20) == list(range(20 - MAX_PENDING, 20)) and flood.dropped == 20 - MAX_PENDING


def test_frames_buffered_before_the_watch_starts_taking_are_forgotten_not_counted(monkeypatch):
    monkeypatch.setattr(FrameReader, "ending", lambda self: "ended")
    loading = live_reader(60)  # the model loads while the stream's first frames come
    assert arriving(loading, [3.0, 2.0, 1.0, 0.0], catch_up=True) == [3] and loading.dropped == 0


# ---------------------------------------------------------------- tracking and the files


def test_people_are_numbered_labelled_from_all_their_frames_and_ended():
    people = PersonTracker(LibraryTracks("bytetrack", fps=10, lost_seconds=0.5), threshold=0.5, min_frames=3,
                           classify_every=4)
    answers = {0: iter([0.9, 0.2, 0.3, 0.2, 0.2]), 1: iter([0.6, 0.9, 0.7])}  # P(no-mask) per face, in turn
    ended = []
    for n in range(20):
        boxes = [(10 + 3 * n, 10, 60 + 3 * n, 70)] + ([(200, 100 + n, 250, 160 + n)] if n < 10 else [])
        seen = people.update(boxes, [0.9] * len(boxes), timestamp=n / 10, wall=1000 + n, pts=n / 10)
        assert len(seen) == (len(boxes) if n else 0)  # a track is confirmed on its second frame
        for person, index in seen:
            if people.due(person):
                people.classified(person, next(answers[index]))
        ended += people.ended()
    (gone,) = ended  # the second face left after frame 9, and its track was dropped 0.5 s later
    assert gone.number == 2 and gone.frames == 9 and (gone.first_pts, gone.last_pts) == (0.1, 0.9)
    assert gone.classified == 3 and gone.p_no_mask == pytest.approx(np.mean([0.6, 0.9, 0.7]))
    assert gone.label(0.5) == "no-mask" and gone.label(0.8) == "mask"  # the model's threshold decides
    (still,) = people.end_all()
    assert still.number == 1 and still.frames == 19 and (still.first_seen, still.last_seen) == (1001, 1019)
    assert still.classified == 5  # on frames 1, 5, 9, 13 and 17: every 4th
    assert still.p_no_mask == pytest.approx(0.36) and still.label(0.5) == "mask"  # though its first frame said 0.9


@pytest.mark.parametrize("name", TRACKERS)
def test_every_tracker_follows_two_walking_faces_and_ends_their_visits(name):
    people = PersonTracker(LibraryTracks(name, fps=10, lost_seconds=0.3), min_frames=3)
    numbers = []
    for n in range(15):
        boxes = [(10 + 4 * n, 10, 60 + 4 * n, 70), (300 - 4 * n, 150, 350 - 4 * n, 210)]
        seen = people.update(boxes, [0.9, 0.9], timestamp=n / 10, wall=n, pts=n / 10)
        for person, index in seen:
            people.classified(person, 0.1)
            if person.number:
                numbers.append((index, person.number))
    assert sorted(set(numbers)) == [(0, 1), (1, 2)] or sorted(set(numbers)) == [(0, 2), (1, 1)]  # one each, kept
    for n in range(15, 25):  # both gone: their visits end once lost for 0.3 s
        people.update([], [], timestamp=n / 10, wall=n, pts=n / 10)
    assert sorted(p.number for p in people.ended()) == [1, 2] and people.present() == []


def test_a_track_shorter_than_min_frames_is_no_person():
    people = PersonTracker(LibraryTracks("bytetrack", fps=10, lost_seconds=0.2), min_frames=3)
    for n in range(2):
        for person, _ in people.update([(10, 10, 50, 50)], [0.9], timestamp=n / 10, wall=n, pts=n / 10):
            people.classified(person, 0.1)
    assert people.end_all() == [] and people.numbered == 0


def test_line_files_grow_by_whole_lines_and_keep_their_header(tmp_path):
    path = tmp_path / "counts.csv"
    first = LineFile(path, COUNTS_HEADER)
    first.write("a,b,1,1,0,10,0")
    first.close()
    second = LineFile(path, COUNTS_HEADER)  # a restarted watch appends
    second.write("c,d,2,1,1,12,1")
    second.close()
    assert path.read_text().splitlines() == [COUNTS_HEADER, "a,b,1,1,0,10,0", "c,d,2,1,1,12,1"]
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n")
    assert "exists with another header" in check_output_file(other, COUNTS_HEADER)
    with pytest.raises(OSError, match="another header"):
        LineFile(other, COUNTS_HEADER)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert check_output_file(fifo) == f"{fifo}: not a regular file"
    with pytest.raises(OSError):
        LineFile(fifo)


def test_usage_errors_exit_2_before_anything_is_read(capsys):
    with pytest.raises(SystemExit) as exited:
        watch.main(["ftp://host/x", "--model", "m.keras"])
    assert exited.value.code == 2
    assert "unsupported URL scheme 'ftp'" in capsys.readouterr().err


# ---------------------------------------------------------------- the command on a file


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_a_file_with_three_people_gives_three(three_people, colour_model_file, tmp_path, capsys):
    events, counts, record = tmp_path / "events.jsonl", tmp_path / "counts.csv", tmp_path / "segments"
    code = watch.main([str(three_people), "--model", str(colour_model_file), "--events", str(events),
                       "--counts", str(counts), "--interval", "2", "--record", str(record),
                       "--segment-seconds", "3"])
    assert code == 0, capsys.readouterr().err
    visits = [json.loads(line) for line in events.read_text().splitlines()]
    assert [v["id"] for v in visits] == [1, 2, 3]
    assert all(v["label"] in ("mask", "no-mask") and v["frames"] >= 20 for v in visits)
    assert visits[0]["first_pts"] < 0.2 and 3.5 < visits[1]["first_pts"] < 3.9  # frame 55 is at 3.67 s
    rows = [line.split(",") for line in counts.read_text().splitlines()]
    assert rows[0] == COUNTS_HEADER.split(",")
    # 100 frames at 15 fps: 6.7 s of the file's clock in 2 s intervals, the last one partial.
    assert len(rows) == 1 + 4 and sum(int(r[5]) for r in rows[1:]) == 100
    assert sum(int(r[2]) for r in rows[1:]) == 3
    assert sum(int(r[3]) for r in rows[1:]) == sum(v["label"] == "mask" for v in visits)
    segments = sorted(record.glob("*.mp4"))
    assert len(segments) == 3 and not list(record.glob(".*"))  # 3 s segments of 6.7 s; nothing half-written
    assert sum(imageio.get_reader(s, format="FFMPEG").count_frames() for s in segments) == 100


# ---------------------------------------------------------------- live streams served on 127.0.0.1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_http(clip: Path, port: int, loop: bool = False, extra: list[str] | None = None) -> subprocess.Popen:
    """ffmpeg serving `clip` as MPEG-TS over HTTP to one client, at the clip's own rate."""
    inputs = ["-stream_loop", "-1"] if loop else []
    return subprocess.Popen([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", *inputs, "-re", "-i",
                             str(clip), *(extra or ["-c", "copy"]), "-f", "mpegts", "-listen", "1",
                             f"http://127.0.0.1:{port}/live.ts"], stdin=subprocess.DEVNULL)


def start_watch(source: str, model: Path, folder: Path, *extra: str) -> subprocess.Popen:
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "facemask.watch", source, "--model", str(model),
                             "--events", str(folder / "events.jsonl"), "--counts", str(folder / "counts.csv"),
                             "--interval", "1", "--status-seconds", "1", "--stall-seconds", "3", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def frames_counted(counts: Path) -> int:
    lines = counts.read_text().splitlines()[1:] if counts.exists() else []
    return sum(int(line.split(",")[5]) for line in lines)


def stop_and_check(process: subprocess.Popen, folder: Path,
                   signum: int = signal.SIGTERM) -> tuple[list[dict], list[list[str]], str]:
    """SIGTERM (or SIGINT): exit 143 (130) within 2 s, every file whole and the counts adding up to the events."""
    sent = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signum, stderr
    assert time.monotonic() - sent < 2.0, stderr
    events_text = (folder / "events.jsonl").read_text()
    counts_text = (folder / "counts.csv").read_text()
    assert events_text.endswith("\n") and counts_text.endswith("\n")
    events = [json.loads(line) for line in events_text.splitlines()]
    rows = [line.split(",") for line in counts_text.splitlines()]
    assert rows[0] == COUNTS_HEADER.split(",") and all(len(r) == 7 for r in rows)
    assert sum(int(r[2]) for r in rows[1:]) == len(events)
    assert sum(int(r[3]) for r in rows[1:]) == sum(e["label"] == "mask" for e in events)
    assert sum(int(r[4]) for r in rows[1:]) == sum(e["label"] == "no-mask" for e in events)
    return events, rows, stderr


@pytest.mark.slow
def test_http_stream_lost_and_served_again_is_reopened_then_sigterm_writes_everything(
        long_clip, colour_model_file, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/live.ts"
    server = serve_http(long_clip, port, loop=True)
    process = start_watch(url, colour_model_file, tmp_path)
    try:
        wait_for(lambda: frames_counted(tmp_path / "counts.csv") >= 30, 120, "frames from the first stream")
        server.kill()  # mid-way: the camera goes away
        server.wait()
        time.sleep(1)
        server = serve_http(long_clip, port, loop=True)  # and comes back on the same address
        before = frames_counted(tmp_path / "counts.csv")
        wait_for(lambda: frames_counted(tmp_path / "counts.csv") >= before + 30, 60, "frames after the outage")
        events, rows, stderr = stop_and_check(process, tmp_path)
    finally:
        process.kill()
        server.kill()
    assert stderr.count("warning:") == 1 and "reopening (outage 1)" in stderr  # said once
    *_, summary, stopped = stderr.splitlines()  # the final status, then the stop's one error line
    assert "stream back after" in stderr and "1 outages" in summary and error_lines(stderr) == [stopped]
    assert stopped == "error: terminated (SIGTERM)"
    # One person before the outage, one after (and one more each time the looped clip starts again).
    assert "stream lost" in [e["ended"] for e in events] and events[-1]["ended"] == "stopped"
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["first_seen"] <= e["last_seen"] for e in events)


@pytest.mark.slow
def test_sigint_mid_file_writes_the_open_track_and_exits_130(long_clip, colour_model_file, tmp_path):
    process = start_watch(str(long_clip), colour_model_file, tmp_path, "--realtime")  # a file read as a camera
    try:
        wait_for(lambda: frames_counted(tmp_path / "counts.csv") >= 30, 120, "frames from the file")
        events, rows, stderr = stop_and_check(process, tmp_path, signal.SIGINT)
    finally:
        process.kill()
    # The face walking in view from the first frame to the last: one person, open when stopped, written then.
    assert len(events) == 1 and events[0]["ended"] == "stopped" and events[0]["frames"] >= 10
    assert error_lines(stderr) == ["error: interrupted"]


@pytest.mark.slow
def test_sigterm_while_the_stream_is_down_exits_143_with_the_files_whole(long_clip, colour_model_file, tmp_path):
    port = free_port()
    server = serve_http(long_clip, port, loop=True)
    process = start_watch(f"http://127.0.0.1:{port}/live.ts", colour_model_file, tmp_path)
    try:
        wait_for(lambda: frames_counted(tmp_path / "counts.csv") >= 30, 120, "frames from the stream")
        server.kill()  # the camera goes away for good: the watch waits between attempts to reopen it
        server.wait()
        time.sleep(5)  # the outage seen (at worst after --stall-seconds 3) and an attempt to reopen failed
        events, rows, stderr = stop_and_check(process, tmp_path)
    finally:
        process.kill()
        server.kill()
    assert "reopening (outage 1)" in stderr and error_lines(stderr) == ["error: terminated (SIGTERM)"]
    assert [e["ended"] for e in events] == ["stream lost"]  # the person in view when it went


RTSP_SERVER = shutil.which("rtsp-server-perl")


@pytest.mark.slow
@pytest.mark.skipif(RTSP_SERVER is None, reason="rtsp-server-perl is not installed (make test installs it)")
def test_rtsp_stream_from_a_real_server(long_clip, colour_model_file, tmp_path):
    client_port, source_port = free_port(), free_port()
    server = subprocess.Popen([RTSP_SERVER, "--clientport", str(client_port), "--serverport", str(source_port),
                               "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    publisher = process = None
    try:
        time.sleep(1.5)  # the server's start-up
        publisher = subprocess.Popen([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-stream_loop", "-1",
                                      "-re", "-i", str(long_clip), "-c", "copy", "-f", "rtsp",
                                      f"rtsp://127.0.0.1:{source_port}/live"], stdin=subprocess.DEVNULL)
        time.sleep(1.5)
        process = start_watch(f"rtsp://127.0.0.1:{client_port}/live", colour_model_file, tmp_path)
        wait_for(lambda: frames_counted(tmp_path / "counts.csv") >= 30, 120, "frames from the RTSP stream")
        events, rows, _ = stop_and_check(process, tmp_path)
    finally:
        for running in (process, publisher, server):
            if running is not None:
                running.kill()
                running.wait()
    # The clip loops every 30 s and the face jumps back to its start then: a new person each time.
    assert events and events[-1]["ended"] == "stopped" and events[0]["frames"] >= 10


@pytest.mark.slow
def test_bad_sources_give_one_error_line(colour_model_file, tmp_path):
    refused = f"http://127.0.0.1:{free_port()}/live.ts"  # nothing listens there
    audio_port = free_port()
    audio_only = subprocess.Popen([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi",
                                   "-i", "sine=frequency=440:duration=30", "-c:a", "mp2", "-f", "mpegts",
                                   "-listen", "1", f"http://127.0.0.1:{audio_port}/live.ts"],
                                  stdin=subprocess.DEVNULL)
    try:
        time.sleep(1)
        cases = {refused: "Connection refused", "/dev/video-none": "no such device",
                 f"http://127.0.0.1:{audio_port}/live.ts": "not a video stream"}
        for source, reason in cases.items():
            result = subprocess.run([sys.executable, "-m", "facemask.watch", source, "--model",
                                     str(colour_model_file), "--events", str(tmp_path / "events.jsonl")],
                                    cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert result.returncode == 1, result.stderr
            assert len(error_lines(result.stderr)) == 1 and reason in error_lines(result.stderr)[0], result.stderr
    finally:
        audio_only.kill()
        audio_only.wait()
    assert not (tmp_path / "events.jsonl").exists()  # nothing written when the source never opened
