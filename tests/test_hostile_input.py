"""Input crafted to hang, exhaust or confuse a command, and what each must say instead: one short line.

FIFOs (and devices, sockets) are refused from their status before they are opened, by every reader
of a path: images, videos, model files and sidecars, CSVs and lists. A model whose input is absurd is
refused when it is loaded. A model config naming a foreign class, or a .keras that is not a zip,
gives one short line. Names from a CSV are printed escaped; duplicate CSV rows are counted and cut once.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import threading
import zipfile
from pathlib import Path

import keras
import pytest

from facemask import annotations, split, splitting
from facemask.models import load_model, save_model
from facemask.sidecar import sidecar_path

HANG_LIMIT = 30  # seconds; a reader that opens a FIFO waits for a writer forever


def finishes(call, fifos: list[Path], seconds: float = HANG_LIMIT):
    """call()'s result, run in a thread; if it is still blocked after `seconds` (a FIFO opened), the FIFOs
    get a writer that closes at once (so the reader sees their end) and the test fails."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed back to the test below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:
            with contextlib.suppress(OSError):  # no reader (any more): nothing to unblock
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(seconds)
        pytest.fail(f"still blocked after {seconds} s: the FIFO was opened")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture
def fifo(tmp_path):
    """make_fifo(name): a FIFO of that name in tmp_path."""
    def make(name: str) -> Path:
        path = tmp_path / name
        os.mkfifo(path)
        return path
    return make


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------- finding 4: FIFOs


def test_the_image_reader_refuses_a_fifo_unopened(fifo):
    from facemask.images import ImageError, load_image, peek_image

    path = fifo("f.jpg")
    for reader in (load_image, peek_image):
        with pytest.raises(ImageError, match=r"f\.jpg: not a regular file \(a FIFO\)"):
            finishes(lambda reader=reader: reader(path), [path])


def test_the_video_reader_says_a_fifo_is_not_a_regular_file(fifo):
    from facemask.video import VideoError, probe_video

    path = fifo("f.mp4")
    with pytest.raises(VideoError, match=r"f\.mp4: not a regular file \(a FIFO\)"):
        finishes(lambda: probe_video(path), [path])


def test_model_file_and_sidecar_fifos_are_refused_unopened(fifo, colour_model_file, tmp_path):
    model = fifo("f.keras")
    with pytest.raises(ValueError, match=r"f\.keras: not a regular file \(a FIFO\)"):
        finishes(lambda: load_model(model), [model])
    real = tmp_path / "real.keras"
    real.write_bytes(colour_model_file.read_bytes())
    sidecar = fifo("real.json")
    with pytest.raises(ValueError, match=r"real\.json: not a regular file \(a FIFO\)"):
        finishes(lambda: load_model(real), [sidecar])


def test_csv_and_list_fifos_are_refused_unopened(fifo):
    from facemask.evaluation import EvaluationError, photos_from_list

    path = fifo("train.csv")
    with pytest.raises(annotations.AnnotationError, match=r"train\.csv: not a regular file \(a FIFO\)"):
        finishes(lambda: annotations.read_rows(path), [path])
    with pytest.raises(splitting.SplitError, match=r"train\.csv: not a regular file \(a FIFO\)"):
        finishes(lambda: splitting.read_manifest(path), [path])
    with pytest.raises(EvaluationError, match=r"train\.csv: not a regular file \(a FIFO\)"):
        finishes(lambda: photos_from_list(path), [path])


def test_detect_and_predict_print_one_line_for_fifos_and_go_on(fifo, colour_model_file, astronaut, tmp_path, capsys):
    from facemask import detect, predict

    astronaut.save(tmp_path / "face.png")
    jpg, mp4 = fifo("f.jpg"), fifo("f.mp4")
    code = finishes(lambda: detect.main(["--model", str(colour_model_file), str(jpg), str(mp4),
                                         str(tmp_path / "face.png"), "--out", str(tmp_path / "out")]), [jpg, mp4])
    assert code == 1
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"error: {jpg}: not a regular file (a FIFO)", f"error: {mp4}: not a regular file (a FIFO)"]
    assert (tmp_path / "out" / "face_annotated.png").is_file()
    code = finishes(lambda: predict.main(["--model", str(colour_model_file), str(jpg)]), [jpg])
    assert code == 1
    assert error_lines(capsys.readouterr().err)[0] == f"error: {jpg}: not a regular file (a FIFO)"
    model = fifo("m.keras")
    code = finishes(lambda: predict.main(["--model", str(model), str(tmp_path / "face.png")]), [model])
    assert code == 1
    assert error_lines(capsys.readouterr().err) == [f"error: {model}: not a regular file (a FIFO)"]


def test_split_skips_a_fifo_photo_with_a_warning(fifo, tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 40), "grey").save(images / "a.png")
    os.mkfifo(images / "b.png")
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("name,x1,x2,y1,y2,classname\na.png,0,0,20,20,face_with_mask\nb.png,0,0,20,20,face_no_mask\n")
    code = finishes(lambda: split.main([str(images), str(csv_path), "100", "0", "0", "--out", str(tmp_path / "o")]),
                    [images / "b.png"])
    assert code == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {images / 'b.png'}: not a regular file (a FIFO); its faces are skipped"]


# ---------------------------------------------------------------- finding 5 and 10: model files


def save_tiny(path: Path, size: tuple[int, int]) -> Path:
    inputs = keras.Input(shape=(*size, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    return save_model(model, path)  # the sidecar says the same size: they agree


@pytest.mark.parametrize("size", [(100_000, 100_000), (2048, 16), (4, 16)])
def test_a_model_input_of_absurd_size_is_refused_at_load_in_one_line(size, tmp_path, astronaut, capsys):
    from facemask import detect, predict

    model = save_tiny(tmp_path / "odd.keras", size)
    with pytest.raises(ValueError, match=r"odd\.keras: the model's input is .* pixels; a classifier here takes"):
        load_model(model)
    astronaut.save(tmp_path / "face.png")
    assert predict.main(["--model", str(model), str(tmp_path / "face.png")]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: {model}: the model's input is {size[0]}x{size[1]} pixels")
    assert detect.main(["--model", str(model), str(tmp_path / "face.png"), "--out", str(tmp_path / "out")]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: {model}: the model's input is")


def rewrite_config(source: Path, target: Path, change) -> Path:
    """A copy of a .keras file whose config.json went through `change(dict)`, with the same sidecar."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    change(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    sidecar_path(target).write_bytes(sidecar_path(source).read_bytes())
    return target


def name_layers(config, module: str, class_name: str) -> None:
    """Every Dense layer of a Keras config made to name `module.class_name` instead."""
    if isinstance(config, dict):
        if config.get("class_name") == "Dense":
            config.update(module=module, class_name=class_name, registered_name=None)
        for value in config.values():
            name_layers(value, module, class_name)
    elif isinstance(config, list):
        for value in config:
            name_layers(value, module, class_name)


def test_a_config_naming_os_system_is_refused_in_a_short_line_naming_it(tmp_path, capsys):
    from facemask import predict

    good = save_tiny(tmp_path / "good.keras", (16, 16))
    evil = rewrite_config(good, tmp_path / "evil.keras", lambda config: name_layers(config, "os", "system"))
    with pytest.raises(ValueError) as caught:
        load_model(evil)
    message = str(caught.value)
    assert message == f"{evil}: not a readable Keras model (its config names 'os.system', which Keras does not " \
                      "know or allow)"
    assert predict.main(["--model", str(evil), "x.png"]) == 1
    assert error_lines(capsys.readouterr().err) == [f"error: {message}"]


def test_any_keras_refusal_is_one_short_line(tmp_path):
    good = save_tiny(tmp_path / "good.keras", (16, 16))
    broken = rewrite_config(good, tmp_path / "broken.keras", lambda config: config["config"].update(layers="x" * 5000))
    with pytest.raises(ValueError) as caught:
        load_model(broken)
    assert str(caught.value).startswith(f"{broken}: not a readable Keras model (")
    assert len(str(caught.value)) < 300 and "\n" not in str(caught.value)


def test_a_keras_file_that_is_not_a_zip_says_so(tmp_path):
    (tmp_path / "junk.keras").write_text("not a model")
    with pytest.raises(ValueError) as caught:
        load_model(tmp_path / "junk.keras")
    assert str(caught.value) == f"{tmp_path / 'junk.keras'}: not a readable Keras model (not a zip file, as every " \
                                ".keras model is)"


# ---------------------------------------------------------------- finding 9: split.py's CSV names and rows


def make_images(folder: Path, *names: str) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (60, 40), "grey").save(folder / name)
    return folder


def write_rows(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "x1", "x2", "y1", "y2", "classname"])
        writer.writerows(rows)
    return path


def test_names_with_control_characters_are_printed_escaped(tmp_path, capsys):
    images = make_images(tmp_path / "images", "a.png")
    forged = "x.png\nerror: forged line\x1b[2J"
    csv_path = write_rows(tmp_path / "train.csv", [["a.png", 0, 0, 20, 20, "face_with_mask"],
                                                   [forged, 0, 0, 20, 20, "face_no_mask"]])
    assert split.main([str(images), str(csv_path), "100", "0", "0", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert not any(line.startswith("error:") for line in err.splitlines())  # no forged line
    assert "\x1b" not in err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warning == (f"warning: {images}/x.png\\nerror: forged line\\x1b[2J: photo not found; its faces are "
                       "skipped")


def test_a_bad_name_in_an_error_line_is_escaped(tmp_path, capsys):
    images = make_images(tmp_path / "images", "a.png")
    csv_path = write_rows(tmp_path / "train.csv", [["../\nerror: forged.png", 0, 0, 20, 20, "face_with_mask"]])
    assert split.main([str(images), str(csv_path), "100", "0", "0", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "climbs out" in err and "\\nerror: forged.png" in err


def test_duplicate_rows_are_reported_and_cut_once(tmp_path, capsys):
    images = make_images(tmp_path / "images", "a.png", "b.png")
    rows = [["a.png", 0, 0, 20, 20, "face_with_mask"], ["a.png", 0, 0, 20, 20, "face_with_mask"],
            ["b.png", 5, 5, 25, 25, "face_no_mask"], ["a.png", 0, 0, 20, 20, "face_with_mask"],
            ["./b.png", 5, 5, 25, 25, "face_no_mask"], ["a.png", 30, 0, 50, 20, "face_with_mask"]]
    csv_path = write_rows(tmp_path / "train.csv", rows)
    out = tmp_path / "o"
    assert split.main([str(images), str(csv_path), "100", "0", "0", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {csv_path}: 3 duplicate rows, cut once (the first: line 3 repeats line 2)"]
    with open(out / "manifest.csv", newline="") as f:
        cut = [(row["source"], row["csv_line"]) for row in csv.DictReader(f)]
    assert sorted(cut) == [("a.png", "2"), ("a.png", "7"), ("b.png", "4")]
    assert "duplicate of an earlier row" in captured.out


def test_onnx_and_tflite_fifos_and_their_sidecars_are_refused_unopened(fifo, tmp_path):
    from facemask.classifier import load_classifier

    for name in ("f.onnx", "f.tflite"):
        path = fifo(name)
        with pytest.raises(ValueError, match=rf"{name}: not a regular file \(a FIFO\)"):
            finishes(lambda path=path: load_classifier(path), [path])
