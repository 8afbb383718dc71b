"""Benchmark: the watch in real time on a live stream, and a soak on a looped one.

    python bench/watch_bench.py --model M --clip CLIP.mp4 [--seconds 60] [--soak-seconds 600]

CLIP is served by ffmpeg as a live MPEG-TS stream over HTTP on 127.0.0.1, at its own rate (-re),
looped, and `python -m facemask.watch` watches it as its own process, as it would a camera:

- real time (--seconds): frames dropped (share of the frames the stream sent) and the median latency
  from a frame's arrival to its track's update, from the watch's own summary line;
- soak (--soak-seconds): the watch's resident memory (VmRSS) and open file descriptors, sampled
  every 10 s; memory growth is the last minute's mean minus the mean of the minute after warm-up.

Use bench/track_bench.py's synthetic clips (640x480, 15 fps, about 5 faces at once) as CLIP.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) dropped \(([\d.]+)%\), (\d+) outages; (\d+) frames, [\d.]+ frames/s, "
                     r"median latency (\d+|nan) ms")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(clip: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
                             "-stream_loop", "-1", "-re", "-i", str(clip), "-c", "copy", "-f", "mpegts",
                             "-listen", "1", f"http://127.0.0.1:{port}/live.ts"], stdin=subprocess.DEVNULL)


def proc_figures(pid: int) -> tuple[float, int]:
    """Resident memory in MB and open file descriptors of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def watch_run(model: Path, clip: Path, seconds: float, work: Path, extra: list[str]) -> dict:
    port = free_port()
    server = serve(clip, port)
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"}
    log = work / f"watch-{int(time.time())}.err"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "facemask.watch", f"http://127.0.0.1:{port}/live.ts",
                                    "--model", str(model), "--events", str(work / "events.jsonl"),
                                    "--counts", str(work / "counts.csv"), "--status-seconds", "30", *extra],
                                   cwd=ROOT, env=env, stderr=stderr)
        samples = []
        try:
            # The model's loading and warm-up come first; the clock starts with the first status line.
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                time.sleep(10)
                if process.poll() is not None:
                    break
                samples.append((time.monotonic() - started, *proc_figures(process.pid)))
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
            exit_seconds = time.monotonic() - sent
        finally:
            process.kill()
            server.kill()
            server.wait()
    text = log.read_text()
    # The summary is the last status line; a stop's own `error: terminated (SIGTERM)` line may follow it.
    summary = next((found for line in reversed(text.splitlines()) if (found := SUMMARY.search(line))), None)
    if summary is None:
        raise SystemExit(f"no summary line from the watch (exit {code}):\n{text[-2000:]}")
    dropped, share, outages, frames, latency = summary.groups()
    return {"code": code, "exit_seconds": exit_seconds, "dropped": int(dropped), "share": float(share),
            "outages": int(outages), "frames": int(frames), "latency_ms": float(latency), "samples": samples}


def report_soak(samples: list[tuple[float, float, int]]) -> None:
    early = [s for s in samples if 60 <= s[0] < 120] or samples[:6]
    late = [s for s in samples if s[0] >= samples[-1][0] - 60]
    growth = statistics.mean(s[1] for s in late) - statistics.mean(s[1] for s in early)
    fds = sorted({s[2] for s in samples})
    minutes = {}
    for seconds, rss, _ in samples:
        minutes.setdefault(int(seconds // 60), []).append(rss)
    print("RSS per minute (mean, MB): " + ", ".join(f"{statistics.mean(v):.0f}" for _, v in sorted(minutes.items())))
    print(f"soak: {len(samples)} samples over {samples[-1][0]:.0f} s; RSS {min(s[1] for s in samples):.0f}-"
          f"{max(s[1] for s in samples):.0f} MB, growth {growth:+.1f} MB (last minute against the second); "
          f"open fds {fds[0]}-{fds[-1]} (first {samples[0][2]}, last {samples[-1][2]})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the real-time run (0: none)")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="length of the soak (0: none)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/watch-bench"))
    parser.add_argument("watch_args", nargs="*", help="more options for the watch, after --")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    # The watch runs in the project folder: paths made absolute.
    args.model, args.clip, args.work = args.model.resolve(), args.clip.resolve(), args.work.resolve()
    cpu = re.search(r"model name\s*: (.*)", Path("/proc/cpuinfo").read_text()).group(1)
    print(f"CPU {cpu}, {os.cpu_count()} cores; load average at start {os.getloadavg()}")
    if args.seconds:
        run = watch_run(args.model, args.clip, args.seconds, args.work, args.watch_args)
        print(f"real time, {args.seconds:g} s: {run['frames']} frames processed, {run['dropped']} dropped "
              f"({run['share']:.1f}%), median latency {run['latency_ms']:.0f} ms, {run['outages']} outages; "
              f"exit {run['code']} {run['exit_seconds']:.2f} s after SIGTERM")
    if args.soak_seconds:
        run = watch_run(args.model, args.clip, args.soak_seconds, args.work, args.watch_args)
        print(f"soak, {args.soak_seconds:g} s: {run['frames']} frames, {run['dropped']} dropped "
              f"({run['share']:.1f}%), median latency {run['latency_ms']:.0f} ms; "
              f"exit {run['code']} {run['exit_seconds']:.2f} s after SIGTERM")
        report_soak(run["samples"])
    print(f"load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
