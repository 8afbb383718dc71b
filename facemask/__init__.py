"""Face mask detection with Keras CNNs: one module per stage of the data's journey.

Library modules (nouns) hold the work; each command (a verb: `facemask SUB`, or `python -m facemask.SUB`)
only parses its command line, calls them and prints. `import facemask` changes nothing outside the package.

sample     - a small generated data set in the Kaggle layout (photos + train.csv), hand-made pixels
sources    - which photos to crop: the Kaggle download when present, else the real sample in sample/
annotations - the one reader of the Kaggle train.csv (boxes, classes, the true faces of a photo)
splitting  - photos to train/valid/test face crops, grouped by photo; the manifest;  command: split
images     - the one image reader, face cropper (one margin) and resizer, for training and serving alike
data       - the tf.data input pipeline and the one crop lister;  command: count
augment    - the training augmentations as Keras layers: geometry, colour, resolution
models     - the compact CNN, the scratch CNN and the fine-tuned VGG16, saving and loading
sidecar    - a model's JSON sidecar: class order, input size, decision threshold, crop margin
config     - the training configuration (TrainConfig), from which the train command line is made
training   - training and its threshold chosen on validation;  command: train
classifier - one classifier for .keras, .onnx (ONNX Runtime) and .tflite (LiteRT) files: loading, checks,
             P(class);  command: predict
conversion - a .keras classifier as ONNX or TFLite, int8/float16, checked against Keras;  command: export
metrics    - scoring arithmetic: crops (accuracy, balanced accuracy, ROC AUC, confusion), detections (IoU, AP)
plots      - the figures: training curves, confusion matrix, image grids, mistakes, precision-recall
evaluation - a classifier scored on a crop folder, or with a face detector on annotated photos; report files
reports    - the evaluation's reports as text and tables;  command (both): evaluate crops|photos
detectors  - the face detectors (CenterFace, MTCNN) behind one interface
detection  - find faces, classify them, draw green/red boxes; photos annotated
video      - the same, frame by frame, for a video file;  command (both): detect
streams    - frames from a camera, a stream URL or a file, read by ffmpeg, the newest kept
tracking   - each person followed across frames (the trackers package), labelled from all their frames
records    - the watch's files: line files that grow by whole lines, video segments that appear whole
watcher    - a camera watched: people tracked, counted, recorded (the Watch loop);  command: watch
app/       - the Gradio web app, a package: ui (the page), live (the webcam stream), uploads (checks on every
             file a request names, the bytes held for requests), server (the process: a cache folder of its
             own, one log line per failed request, memory given back);  command: app (app/__main__.py)
cli        - what every command line shares: parser, help layout, exit statuses, the stop on a signal
__main__   - `facemask SUBCOMMAND`, the one command (also `python -m facemask`): runs the module of that name
tf_startup - TensorFlow's start-up lines kept off the terminal (and out of a notebook's outputs)
quiet_start - imported first by every command: tf_startup's filter on before TensorFlow is imported
colab      - the notebook's Colab set-up: which packages pip replaced under the running session
"""

import contextlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from facemask.cli import deferred_stop

CLASS_NAMES = ["mask", "no-mask"]
SPLITS = ("train", "valid", "test")
# The image files a crop folder may hold (what the training pipeline and the evaluation read).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
IMAGE_SIZE = (224, 224)
# One default seed for every command (split, training, the generated sample): a run without --seed is repeatable.
DEFAULT_SEED = 42
# Every face crop, for training (split.py) and serving (detect, app, evaluation), is the face box widened by
# this fraction of its size on every side. Kaggle boxes stop at the chin and the cheeks, cutting off the
# lower edge of the mask, the very thing that tells a mask from a chin; 10% brings it back, and absorbs a
# detector box a few pixels off the annotated one (IoU 0.5 allows that much) without pulling in
# neighbouring faces in a crowd, as 25% does.
DEFAULT_MARGIN = 0.1
# On P(no-mask): the most probable class, what a model whose sidecar names no threshold is served with.
DEFAULT_THRESHOLD = 0.5
MAX_MARGIN = 10.0  # a larger margin would crop mostly background (and overflow on absurd values)

T = TypeVar("T")


# What a path can be besides a regular file or a folder: reading one hangs (a FIFO waits for a writer,
# forever) or never ends (/dev/zero), so every reader of a user's path refuses them before opening.
SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                 (stat.S_ISBLK, "a block device"))


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """"not a regular file (a FIFO)" for a FIFO, socket or device, from its status alone (never opened);
    None for anything else, a regular file, a folder or a missing path, which the reader words itself."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, unreadable, a NUL in the name: the reader's own error says so
        return None
    kind = next((kind for test, kind in SPECIAL_FILES if test(mode)), None)
    return f"not a regular file ({kind})" if kind else None


def partial_path(path: Path) -> Path:
    """A hidden, unique name beside `path` for writing before the final rename (same file system)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")


def save_atomically(path: Path, write: Callable[[Path], T]) -> T:
    """Write through a temporary file beside `path`, so a failure leaves no half-written file; `write`'s result."""
    temporary = partial_path(path)
    try:
        result = write(temporary)
        os.replace(temporary, path)
        return result
    finally:
        temporary.unlink(missing_ok=True)


def save_json(path: Path, value: object) -> Path:
    """`value` as indented JSON in `path` (its folder made if missing), written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(value, indent=2) + "\n"
    save_atomically(path, lambda target: target.write_text(payload))
    return path


@contextlib.contextmanager
def atomic_folder(path: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a hidden folder beside `path` to fill; on success it becomes `path`, on any failure it goes.

    So `path` appears whole or not at all, Ctrl-C and SIGTERM included. An empty `path` is taken over;
    a non-empty one is a FileExistsError unless `replace`, and then swapped out only once the new
    folder is complete. The swap and the removals run whole (`facemask.cli.deferred_stop`): a signal
    arriving then is raised after them, so the folder's parent never holds both folders, or neither.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = partial_path(path)
    temporary.mkdir()  # a plain mkdir: the folder gets the umask's usual permissions, unlike mkdtemp's 0700
    try:
        yield temporary
        with deferred_stop():
            _swap_in(temporary, path, replace)
    finally:
        with deferred_stop():
            remove_tree(temporary)  # already gone once swapped in


def _swap_in(folder: Path, path: Path, replace: bool) -> None:
    """Rename the complete `folder` to `path`; a previous `path` is set aside first and removed last."""
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    if not path.exists():
        folder.rename(path)
        return
    if not replace:
        raise FileExistsError(f"{path}: folder exists and is not empty")
    previous = partial_path(path)
    path.rename(previous)
    try:
        folder.rename(path)
    except BaseException:
        previous.rename(path)  # put the previous folder back before reporting the failure
        raise
    remove_tree(previous)


def remove_tree(folder: Path, threads: int = 8) -> None:
    """Delete `folder` and everything in it, if it exists; errors are ignored, as shutil.rmtree(ignore_errors).

    The files are unlinked by several threads: the disk makes each unlink wait (journal, discard), and
    side by side they wait together, so a stopped command that must remove thousands of crops is gone
    sooner (bench/stop_bench.py compares).
    """
    files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
    if len(files) > 1000:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(_unlink_quietly, files, chunksize=256):
                pass
    shutil.rmtree(folder, ignore_errors=True)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)

