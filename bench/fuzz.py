"""Coverage-guided fuzzing of the three doors where outside bytes come in.

    python bench/fuzz.py --seconds 600                  # all three targets, the time shared between them
    python bench/fuzz.py --target image --seconds 60    # one target

Targets, and what each must do with any bytes at all (each check returns "accepted" or "refused"):
- image:   `facemask.images.load_image` raises only ImageError naming the file, or returns an RGB
           image of the size its header states (width and height swapped by an EXIF rotation);
- csv:     `annotations.read_rows` raises only AnnotationError naming the CSV, or returns rows whose boxes
           `splitting.crop_box` can cut without an arithmetic error;
- sidecar: `facemask.sidecar.read_sidecar` raises only ValueError naming the sidecar, or returns
           at least two distinct class names and, if given, a positive [height, width].

atheris (libFuzzer for Python) runs each target in its own process, instrumenting Pillow and the
project's readers so that inputs reaching new code are kept and mutated further. Each target starts
from the small valid files below (`seed_images`, `seed_csvs`, `seed_sidecars`) and keeps the inputs
it finds in `<workdir>/corpus/<target>/`, so later runs go on where earlier ones stopped. A crash
(an undocumented exception, a broken promise, or an input slower than `--input-timeout`) stops its
target, is printed and saved under `<workdir>/crashes/`; turn it into a regression test in
tests/test_fuzz.py. The same seeds and checks drive the Hypothesis tests in tests/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("image", "csv", "sidecar")
FUZZ_NAME = "fuzzed-input"  # what load_image's messages must call the bytes
# Small enough that a header claiming a huge image is refused before decoding, so the fuzzer's
# time goes on parsing; the pixel limit itself is the same code whatever its value.
FUZZ_MAX_PIXELS = 1 << 16
MAX_INPUT_BYTES = 8192


# ---------------------------------------------------------------- seeds: small valid files


def seed_images() -> dict[str, bytes]:
    """One small valid file per format and interesting mode, 6x4 pixels (4x6 once EXIF-rotated)."""
    from PIL import Image

    rgb = Image.new("RGB", (6, 4), (200, 40, 40))
    rgb.putpixel((0, 0), (0, 0, 255))  # not uniform, so encoders keep some structure
    rgba = rgb.convert("RGBA")
    rgba.putpixel((1, 1), (0, 0, 0, 0))
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    grey16 = Image.new("I;16", (6, 4), 40000)

    def encode(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        return buffer.getvalue()

    return {
        "rgb.png": encode(rgb, "PNG"),
        "rgba.png": encode(rgba, "PNG"),
        "palette-transparent.png": encode(palette, "PNG"),
        "grey16.png": encode(grey16, "PNG"),
        "rotated.jpg": encode(rgb, "JPEG", quality=90, exif=exif),
        "grey.jpg": encode(rgb.convert("L"), "JPEG"),
        "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG"),
        "palette.gif": encode(rgb.convert("P"), "GIF"),
        "rgb.bmp": encode(rgb, "BMP"),
        "rgba.webp": encode(rgba, "WEBP", lossless=True),
        "rgb.tiff": encode(rgb, "TIFF"),
        "deflate.tiff": encode(rgba, "TIFF", compression="tiff_adobe_deflate"),
        "rgb.ppm": encode(rgb, "PPM"),
        "grey.pgm": encode(rgb.convert("L"), "PPM"),
        "bits.pbm": encode(rgb.convert("1"), "PPM"),
        "plain.ppm": b"P3\n6 4\n255\n" + b"200 40 40 " * 24 + b"\n",
    }


def seed_csvs() -> dict[str, bytes]:
    """Small CSVs in the Kaggle layout: the column trap, a BOM, CRLF, quoting, extra columns."""
    header = "name,x1,x2,y1,y2,classname\n"
    return {
        "kaggle.csv": (header + "a.jpg,10,20,50,80,face_with_mask\nb.png,0,0,30.5,40,face_no_mask\n"
                       "a.jpg,5,5,9,9,hat\n").encode(),
        "bom-crlf.csv": ("\ufeff" + header + "a.jpg,1,2,3,4,face_with_mask_incorrect\r\n\r\n").encode("utf-8"),
        "quoted.csv": (header + '"dir/a b.jpg","1e2","2E1","3.0","4",face_with_mask\n').encode(),
        "reordered.csv": b"classname,y2,extra,name,y1,x2,x1\nface_no_mask,9,x,c.jpg,8,1,2\n",
        "header-only.csv": header.encode(),
    }


def seed_sidecars() -> dict[str, bytes]:
    """Sidecars as save_model writes them, and smaller valid variants."""
    return {
        "saved.json": json.dumps({"class_names": ["mask", "no-mask"], "image_size": [224, 224],
                                  "name": "scratch_cnn"}, indent=2).encode() + b"\n",
        "minimal.json": b'{"class_names":["mask","no-mask"]}',
        "three.json": b'{"class_names": ["a", "b", "c"], "image_size": [16, 32], "extra": {"k": [1, null]}}',
    }


SEEDS: dict[str, Callable[[], dict[str, bytes]]] = {
    "image": seed_images, "csv": seed_csvs, "sidecar": seed_sidecars,
}


# ---------------------------------------------------------------- the checks, one per door


class BrokenPromise(AssertionError):
    """A reader returned or raised something its documentation rules out."""


def check_image(data: bytes) -> str:
    """Any bytes: an ImageError naming the input, or an RGB image of the size the header states."""
    import numpy as np
    from PIL import Image

    from facemask.images import ImageError, load_image

    try:
        image = load_image(data, max_pixels=FUZZ_MAX_PIXELS, name=FUZZ_NAME)
    except ImageError as error:
        if not str(error).startswith(f"{FUZZ_NAME}: "):
            raise BrokenPromise(f"the ImageError does not name the file: {error}") from error
        return "refused"
    # load_image read these bytes, so Pillow opens them again; its header gives the stated size.
    with Image.open(io.BytesIO(data)) as header:
        width, height = header.size
        if header.getexif().get(0x0112) in (5, 6, 7, 8):  # the orientations that turn the image by 90 degrees
            width, height = height, width
    if image.mode != "RGB" or image.size != (width, height):
        raise BrokenPromise(f"accepted as {image.mode} {image.size}, the header says {(width, height)}")
    pixels = np.asarray(image)
    if pixels.shape != (height, width, 3) or pixels.dtype != np.uint8:
        raise BrokenPromise(f"pixels of shape {pixels.shape} and type {pixels.dtype}")
    return "accepted"


def check_csv(data: bytes, scratch: Path) -> str:
    """Any bytes as a CSV: an AnnotationError naming it, or rows whose boxes are finite and can be cut."""
    import math

    from facemask import annotations, splitting

    path = scratch / "fuzzed.csv"
    path.write_bytes(data)
    try:
        rows = annotations.read_rows(path)
    except annotations.AnnotationError as error:
        if not str(error).startswith(f"{path}: "):
            raise BrokenPromise(f"the AnnotationError does not name the CSV: {error}") from error
        return "refused"
    for row in rows:
        values = (row.xmin, row.ymin, row.xmax, row.ymax)
        sizes = (row.xmax - row.xmin, row.ymax - row.ymin)
        if not all(math.isfinite(v) for v in (*values, *sizes)):
            raise BrokenPromise(f"line {row.line}: a box that is not finite: {values}")
        if annotations.check_name(row.name) is not None:
            raise BrokenPromise(f"line {row.line}: a refused name was accepted: {row.name!r}")
        for margin in (0.0, 0.1, 1.0):  # the default and a generous margin must not overflow either
            splitting.crop_box(row, 640, 480, margin=margin)
    return "accepted"


def check_sidecar(data: bytes, scratch: Path) -> str:
    """Any bytes as a model sidecar: a ValueError naming it, or checked class names and size."""
    from facemask.sidecar import read_sidecar

    path = scratch / "fuzzed.json"
    path.write_bytes(data)
    try:
        meta = read_sidecar(path)
    except ValueError as error:
        if not str(error).startswith(f"{path}: "):
            raise BrokenPromise(f"the ValueError does not name the sidecar: {error}") from error
        return "refused"
    names = meta["class_names"]
    if not (isinstance(names, list) and len(names) >= 2 and len(set(names)) == len(names)
            and all(isinstance(n, str) and n.isprintable() and n for n in names)):
        raise BrokenPromise(f"accepted class names {names!r}")
    size = meta.get("image_size", (1, 1))
    if not (isinstance(size, tuple) and len(size) == 2 and all(type(v) is int and v > 0 for v in size)):
        raise BrokenPromise(f"accepted image size {size!r}")
    return "accepted"


# ---------------------------------------------------------------- running atheris


def instrument(target: str) -> None:
    """Import what `target` runs with atheris' coverage instrumentation, and nothing bigger.

    numpy, TensorFlow and Keras are imported first, uninstrumented: they are huge and not what is
    fuzzed, and instrumenting them would slow every input down.
    """
    import atheris
    import numpy  # noqa: F401

    if target == "image":
        with atheris.instrument_imports(include=["PIL", "facemask.images"]):
            from PIL import Image

            Image.init()  # imports every format plugin now, inside the instrumentation
            import facemask.images  # noqa: F401
    elif target == "csv":
        import PIL.Image  # noqa: F401  (facemask.splitting reads photos; the CSV reader is what is fuzzed)

        with atheris.instrument_imports(include=["facemask.annotations", "csv"]):
            from facemask import annotations, splitting  # noqa: F401
    else:
        with atheris.instrument_imports(include=["facemask.sidecar", "json"]):
            import facemask.sidecar  # noqa: F401


def fuzz_one(target: str, seconds: int, workdir: Path, input_timeout: int) -> None:
    """Run atheris on one target in this process (libFuzzer exits the process when done)."""
    import atheris

    instrument(target)
    scratch = workdir / "scratch" / target
    scratch.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in SEEDS[target]().items():
        (corpus / f"seed-{name}").write_bytes(data)
    crashes = workdir / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    checks: dict[str, Callable[[bytes], str]] = {
        "image": check_image,
        "csv": lambda data: check_csv(data, scratch),
        "sidecar": lambda data: check_sidecar(data, scratch),
    }
    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={seconds}", f"-timeout={input_timeout}",
                   f"-max_len={MAX_INPUT_BYTES}", f"-artifact_prefix={crashes}/{target}-", "-print_final_stats=1"],
                  checks[target])
    atheris.Fuzz()


def run_target(target: str, seconds: int, workdir: Path, input_timeout: int) -> tuple[int | None, str | None]:
    """Fuzz one target in a child process; (inputs tried, crash file or None), with its log kept."""
    log = workdir / f"{target}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--child", "--target", target, "--seconds", str(seconds),
               "--workdir", str(workdir), "--input-timeout", str(input_timeout)]
    with open(log, "w") as output:
        subprocess.run(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, check=False)
    text = log.read_text(errors="replace")
    executed = re.findall(r"stat::number_of_executed_units: (\d+)", text)
    crash = re.findall(r"Test unit written to (\S+)", text)
    if crash:  # show the finding here, not only in the log
        start = text.find("=== Uncaught Python exception")
        print(text[start if start >= 0 else 0:][-4000:], file=sys.stderr)
    return (int(executed[-1]) if executed else None), (crash[-1] if crash else None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fuzz the image, CSV and sidecar readers with atheris.")
    parser.add_argument("--seconds", type=int, default=600, help="fuzzing time in all, shared between targets")
    parser.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    parser.add_argument("--workdir", type=Path, default=ROOT / "fuzz-out",
                        help="corpus, crashes and logs (default: fuzz-out/)")
    parser.add_argument("--input-timeout", type=int, default=10,
                        help="seconds one input may take before it counts as a finding (default 10)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        fuzz_one(args.target, args.seconds, args.workdir, args.input_timeout)
        return 0
    targets = TARGETS if args.target == "all" else (args.target,)
    per_target = max(1, args.seconds // len(targets))
    found = 0
    for target in targets:
        started = time.monotonic()
        tried, crash = run_target(target, per_target, args.workdir, args.input_timeout)
        elapsed = time.monotonic() - started
        rate = f"{tried / elapsed:,.0f}/s" if tried else "?"
        status = f"CRASH saved to {crash}" if crash else "no crash"
        print(f"{target:8s} {tried if tried is not None else '?':>10} inputs in {elapsed:6.0f} s ({rate}): {status}"
              f"  [log: {args.workdir / (target + '.log')}]", flush=True)
        found += crash is not None
    return 1 if found else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # facemask/ from the repository, however this is started
    sys.exit(main())
