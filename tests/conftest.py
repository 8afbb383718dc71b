"""Everything the test modules share, in one place (no test module imports another):

- data: the real sample (committed), the generated sample (hand-made pixels), the real data folder (optional);
- pictures and clips: the astronaut photo, video clips written on the spot;
- test doubles: a classifier (RecordingModel), face detectors (FixedFaces, TruthFaceDetector), and a real
  Keras model with known weights (build_colour_model);
- the web app served in this process on a free port, with its inputs (tests/test_app*.py);
- the package: pyproject.toml parsed, the sources a build needs copied (tests/test_packaging.py, test_pythons.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: requirements-dev.txt brings tomli
    import tomli as tomllib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Offline, like the app: gradio_client would otherwise start a telemetry thread per Client.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
MODEL_CACHE: list[Path] = []  # the folder pytest_configure made, if it ran


def pytest_configure(config: pytest.Config) -> None:
    """The tests' own cache folder (facemask.detectors.cache_folder), inherited by every process they start:
    nothing written to the user's ~/.cache. Made here, before any test module copies os.environ, and not
    on import: bench scripts import helpers from the test modules, and must neither get it nor leave it."""
    MODEL_CACHE.append(Path(tempfile.mkdtemp(prefix="facemask-test-cache-")))
    os.environ["FACEMASK_CACHE"] = str(MODEL_CACHE[-1])


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in MODEL_CACHE:
        shutil.rmtree(folder, ignore_errors=True)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's facemask/, whatever else is installed
SHARED = ROOT.parent / "shared" / "datasets"
REAL_SAMPLE = ROOT / "sample"  # 60 CC0 photos of the Kaggle set, committed (scripts/pick_sample.py)

requires_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real data folder {SHARED} is absent (it is not part of a fresh clone)"
)


@pytest.fixture(scope="session")
def real_sample_dir() -> Path:
    """The real photos committed in sample/ (images/ and train.csv): the default data of the tests."""
    assert (REAL_SAMPLE / "train.csv").is_file(), f"{REAL_SAMPLE} is part of the repository"
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def real_sample_crops(real_sample_dir, tmp_path_factory) -> Path:
    """The real sample cropped by split.py into train/valid/test x mask/no-mask (70/15/15)."""
    from facemask import split

    out = tmp_path_factory.mktemp("real-crops") / "data"
    code = split.main([str(real_sample_dir / "images"), str(real_sample_dir / "train.csv"), "70", "15", "15",
                       "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The generated sample in the Kaggle layout (images/ and train.csv), for tests that need
    hand-made pixels: cartoon faces whose classes a few epochs of training tell apart."""
    from facemask.sample import make_sample

    out = tmp_path_factory.mktemp("sample")
    make_sample(out, photos=40, seed=0)
    return out


@pytest.fixture(scope="session")
def sample_crops(sample_dir, tmp_path_factory) -> Path:
    """The generated sample cropped by split.py into train/valid/test x mask/no-mask (70/15/15)."""
    from facemask import split

    out = tmp_path_factory.mktemp("crops") / "data"
    code = split.main([str(sample_dir / "images"), str(sample_dir / "train.csv"), "70", "15", "15", "--out", str(out)])
    assert code == 0
    return out


# ---------------------------------------------------------------- pictures and clips

# The astronaut's face in skimage.data.astronaut() (512x512), checked by eye: forehead to chin.
ASTRONAUT_FACE = (182, 64, 265, 171)
# The part of the astronaut around her face, in a 4:3 frame.
ASTRONAUT_4x3 = (64, 0, 448, 288)


def astronaut_photo(size: tuple[int, int] | None = None):
    """A real public-domain face that ships with scikit-image, as a PIL image: the whole 512x512
    picture, or given a size, the 4:3 part around her face resized to it."""
    from PIL import Image
    from skimage import data as skimage_data

    image = Image.fromarray(skimage_data.astronaut())
    return image if size is None else image.crop(ASTRONAUT_4x3).resize(size, Image.BILINEAR)


@pytest.fixture(scope="session")
def astronaut():
    """The whole astronaut picture (512x512 RGB)."""
    return astronaut_photo()


def write_clip(path: Path, frames: int = 12, fps: float = 12, size: tuple[int, int] = (320, 240),
               codec: str = "libx264", output_params: list[str] | None = None) -> Path:
    """A short clip of the astronaut panning 2 px right and 1 px down per frame (a real face, offline)."""
    import imageio.v2 as imageio

    width, height = size
    side = width + 2 * frames
    still = np.asarray(astronaut_photo().resize((side, side)))
    with imageio.get_writer(path, format="FFMPEG", fps=fps, codec=codec, macro_block_size=1,
                            ffmpeg_log_level="error", output_params=output_params) as writer:
        for i in range(frames):
            writer.append_data(still[i: i + height, 2 * i: 2 * i + width])
    return path


def write_plain_clip(path: Path, frames: int, fps: float, size: tuple[int, int]) -> Path:
    """A clip of flat grey frames, shade changing per frame: tiny on disk whatever its frame count or size."""
    import imageio.v2 as imageio

    width, height = size
    with imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                            ffmpeg_log_level="error", output_params=["-preset", "ultrafast"]) as writer:
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        for i in range(frames):
            frame[:] = (i * 7) % 256
            writer.append_data(frame)
    return path


# ---------------------------------------------------------------- test doubles


class RecordingModel:
    """Stands in for a Keras classifier and keeps every batch it is given: what the model would see.

    Answers P(mask) from the crop's mean green against red (greenish "mask", reddish "no-mask"), so
    labels vary with the pixels; or, given `p_mask`, that same answer for every crop.
    """

    output_shape = (None, 2)

    def __init__(self, image_size: tuple[int, int] = (224, 224), p_mask: float | None = None):
        self.input_shape = (None, *image_size, 3)
        self.p_mask = p_mask
        self.batches: list[np.ndarray] = []

    def predict_on_batch(self, batch):
        self.batches.append(np.array(batch))
        if self.p_mask is None:
            p_mask = 1 / (1 + np.exp(-(batch[..., 1].mean(axis=(1, 2)) - batch[..., 0].mean(axis=(1, 2))) / 10))
        else:
            p_mask = np.full(len(batch), self.p_mask)
        return np.stack([p_mask, 1 - p_mask], axis=1).astype(np.float32)


class FixedFaces:
    """A face detector double: the same faces in any image it is given, and a record of every call.

    Faces are boxes (x0, y0, x1, y1) in the pixels of that image, scoring `scores` (0.99 each by
    default). Its threshold is 0, so FaceMaskDetector shows all its faces by default. `shapes`
    keeps the shape of every array it was given (what detection ran on), `upscales` the
    allow_upscale it was called with each time.
    """

    threshold = 0.0  # the score from which FaceMaskDetector keeps its faces: all of them

    def __init__(self, *boxes, scores=None):
        scores = [0.99] * len(boxes) if scores is None else scores
        self.faces = [(tuple(float(v) for v in box), float(score)) for box, score in zip(boxes, scores, strict=True)]
        self.shapes: list[tuple[int, ...]] = []
        self.upscales: list[bool] = []

    def find_faces(self, rgb, allow_upscale=True):
        self.shapes.append(np.asarray(rgb).shape)
        self.upscales.append(allow_upscale)
        return list(self.faces)


@pytest.fixture
def drawn_texts(monkeypatch) -> list[str]:
    """Every text Pillow draws during the test (the labels on the boxes), in order; an app served by the
    test runs in its process, so its drawing is seen too."""
    from PIL import ImageDraw

    texts: list[str] = []
    real_text = ImageDraw.ImageDraw.text

    def text(self, xy, content, *args, **kwargs):
        texts.append(content)
        return real_text(self, xy, content, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
    return texts


class TruthFaceDetector:
    """A face detector double that "finds" the annotated faces of known photos, recognised by their pixels.

    Built from a Kaggle-layout folder (photos as facemask.images.load_image reads them, faces as split.py
    reads the CSV). `miss_every` k > 0 leaves out every k-th face of each photo; `false_faces` adds one
    box per photo where no face is (the top-left 4x4 pixels, score 0.95). Scores fall 0.999, 0.998, ...
    """

    threshold = 0.5  # the score from which its faces are shown, as every FaceDetector says

    def __init__(self, images_dir: Path, csv_path: Path, miss_every: int = 0, false_faces: bool = False):
        import hashlib

        import numpy as np

        from facemask.annotations import apply_class_rules, read_rows
        from facemask.images import load_image

        self._hash = lambda rgb: hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()
        faces, _ = apply_class_rules(read_rows(csv_path), "no-mask")
        boxes: dict[str, list] = {}
        for row, _ in faces:
            boxes.setdefault(row.name, []).append((row.xmin, row.ymin, row.xmax, row.ymax))
        self.faces = {}
        for name, found in boxes.items():
            if (images_dir / name).is_file():
                kept = [box for i, box in enumerate(found) if not (miss_every and i % miss_every == miss_every - 1)]
                self.faces[self._hash(np.asarray(load_image(images_dir / name)))] = kept
        self.false_faces = false_faces

    def find_faces(self, rgb, allow_upscale=True):
        boxes = self.faces.get(self._hash(rgb), [])  # an unknown image (the warm-up) has no face
        found = [(tuple(float(v) for v in box), 0.999 - 0.001 * (i % 90)) for i, box in enumerate(boxes)]
        return found + ([((0.0, 0.0, 4.0, 4.0), 0.95)] if self.false_faces else [])


COLOUR_SIZE = 16
COLOUR_WEIGHT = 0.01  # strong colours give confident, unequal probabilities


def build_colour_model(size: int = COLOUR_SIZE, weight: float = COLOUR_WEIGHT):
    """A real Keras classifier with the project's contract (raw RGB in, 2-way softmax out) and fixed
    weights: logits = +-weight * (mean red - mean blue), so reddish is "mask" and bluish "no-mask"."""
    import keras

    inputs = keras.Input(shape=(size, size, 3), name="rgb")
    outputs = keras.layers.Dense(2, activation="softmax", name="probabilities")(
        keras.layers.GlobalAveragePooling2D()(inputs)
    )
    model = keras.Model(inputs, outputs, name="colour")
    kernel = np.array([[weight, -weight], [0.0, 0.0], [-weight, weight]], dtype=np.float32)
    model.get_layer("probabilities").set_weights([kernel, np.zeros(2, dtype=np.float32)])
    return model


def colour_probabilities(rgb: tuple[int, int, int], weight: float = COLOUR_WEIGHT) -> np.ndarray:
    """The colour model's [P(mask), P(no-mask)] for a uniform image, computed by hand."""
    logits = np.array([weight * (rgb[0] - rgb[2]), weight * (rgb[2] - rgb[0])])
    return np.exp(logits) / np.exp(logits).sum()


@pytest.fixture(scope="session")
def colour_model_file(tmp_path_factory) -> Path:
    """The colour model saved as facemask saves models (.keras and its class-name sidecar)."""
    from facemask.models import save_model

    path = tmp_path_factory.mktemp("model") / "colour.keras"
    save_model(build_colour_model(), path)
    return path


# ---------------------------------------------------------------- the web app (tests/test_app*.py)

SERVING_LINE = re.compile(r"Serving the face mask detector on (http://127\.0\.0\.1:\d+/)\n")


@pytest.fixture(scope="module")
def app_files(tmp_path_factory) -> dict[str, Path]:
    """The app's inputs: a face photo, a faceless one, a tiny clip (10 frames, 0.4 s) and the bad files."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("inputs")
    paths = {name: folder / name for name in
             ("astronaut.jpg", "grey.png", "clip.mp4", "notes.jpg", "truncated.jpg", "bomb.png", "noise.png")}
    astronaut_photo().save(paths["astronaut.jpg"], quality=92)
    Image.new("RGB", (320, 240), (128, 128, 128)).save(paths["grey.png"])
    write_clip(paths["clip.mp4"], frames=10, fps=25, size=(160, 120))
    paths["notes.jpg"].write_text("shopping list: eggs, milk\n")  # an image's name, not an image's bytes
    data = paths["astronaut.jpg"].read_bytes()
    paths["truncated.jpg"].write_bytes(data[: len(data) // 2])
    # 50 megapixels of one colour: a few kB as PNG, 150 MB once decoded, over load_image's 40 MP limit.
    Image.new("1", (10_000, 5_000)).save(paths["bomb.png"])
    # Random pixels do not compress: about 0.7 MB, over the strict app's 0.5 MB limit.
    noise = np.random.default_rng(0).integers(0, 256, (480, 480, 3), dtype=np.uint8)
    Image.fromarray(noise).save(paths["noise.png"])
    return paths


@pytest.fixture(scope="module")
def app_model_file(tmp_path_factory) -> Path:
    """The app's classifier: the scratch CNN, untrained (the app tests check plumbing, not accuracy)."""
    from facemask.models import build_scratch_cnn, save_model

    return save_model(build_scratch_cnn(), tmp_path_factory.mktemp("models") / "scratch.keras")


@pytest.fixture(scope="module")
def app_dirs(tmp_path_factory):
    """Gradio's cache and the system temporary folder, both redirected into pytest's tmp folders."""
    cache, scratch = tmp_path_factory.mktemp("gradio-cache"), tmp_path_factory.mktemp("system-tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(cache))
        patch.setattr(tempfile, "tempdir", str(scratch))
        yield {"cache": cache, "tmp": scratch}


@pytest.fixture(scope="module")
def app_detector(app_model_file):
    """The app's detector as `python -m facemask.app` builds it: the default face detector."""
    from facemask.detection import FaceMaskDetector

    return FaceMaskDetector.from_path(app_model_file)


@contextlib.contextmanager
def serving(demo, launch_with_limits: bool = True):
    """Serve a Blocks on a free port for the duration of the block; yields its URL.

    No port is picked here: Gradio binds the first free one from 7860 itself (port 0 / None) and names
    it in the URL, moving on when another process takes one first. Picking a port by binding a probe
    socket and closing it would leave it free for any other process to take before the app binds it.
    """
    from facemask.app.ui import launch

    if launch_with_limits:
        url, _ = launch(demo, port=0)
    else:  # a plain launch: only the app's own checks stand between an upload and the detector
        _, url, _ = demo.launch(server_port=None, ssr_mode=False, quiet=True, prevent_thread_lock=True)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def app_url(app_detector, app_dirs):
    """The app as `python -m facemask.app` serves it: 50 MB and 60 s limits."""
    from facemask.app.ui import build_app

    with serving(build_app(app_detector)) as url:
        yield url


def run_app(*args: str, stderr=subprocess.PIPE, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m facemask.app ARGS` in its own process; its stdout is a pipe (see served_url)."""
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"} | (env or {})
    return subprocess.Popen([sys.executable, "-m", "facemask.app", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=stderr, text=True)


def served_url(process: subprocess.Popen, log: Path, seconds: float = 240) -> str:
    """The URL in the line an app started by run_app prints once it serves, read within `seconds`.

    Run with `--port 0`, the app takes its port as it binds it (see serving), and this line says which.
    """
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    line = process.stdout.readline() if ready else ""
    served = SERVING_LINE.fullmatch(line)
    assert served is not None, line + log.read_text()
    return served.group(1)


# ---------------------------------------------------------------- the package (test_packaging.py, test_pythons.py)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def parse_requirements(lines: list[str]) -> list[Requirement]:
    """Requirement lines (requirements*.txt or pyproject's lists), comments, blank lines and pip options skipped."""
    stripped = (line.split("#")[0].strip() for line in lines)
    return [Requirement(line) for line in stripped if line and not line.startswith("-")]


def copy_package_source(dest: Path) -> Path:
    """What `pip install .` builds from, copied to `dest`, so a build's scratch folders (build/, *.egg-info)
    never land in the working tree."""
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", dest)
    shutil.copy(ROOT / "split.py", dest)
    shutil.copytree(ROOT / "facemask", dest / "facemask", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


# The fixtures that serve a Gradio app on a port: a test that uses one, directly or through another
# fixture, starts a server and is marked slow wherever it is written (`make test-fast` leaves it out).
SERVER_FIXTURES = {"app_url", "strict_url", "fake_app"}


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
