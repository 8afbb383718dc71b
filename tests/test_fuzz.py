"""Fuzzing the doors where outside bytes come in: images, split.py's CSV, model sidecars.

Hypothesis feeds each reader random bytes and mutations of small valid files (bench/fuzz.py's
seeds, the ones atheris starts from too) and holds it to its promise (bench/fuzz.py's checks): only
the documented exception, naming the file, and what is accepted is usable. The runs are bounded
and derandomized, so every run tries the same inputs. Below them, regression tests for the
inputs that broke a reader, starting with the issue's `P6` file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import FixedFaces
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from bench.fuzz import check_csv, check_image, check_sidecar, seed_csvs, seed_images, seed_sidecars


def bounded(examples: int) -> settings:
    """`examples` inputs, the same on every run (derandomized, no example database), no time limit
    per input: the suite's time stays bounded and a failure is reproducible."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


# Pillow warns about the damage it reads past (corrupt EXIF, short reads): expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")
IMAGE_SEEDS, CSV_SEEDS, SIDECAR_SEEDS = seed_images(), seed_csvs(), seed_sidecars()
# Values that sit on the edges of header fields: sizes, offsets, counts.
EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
EDGE_WORDS = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x01")


@st.composite
def mutated(draw: st.DrawFn, seeds: dict[str, bytes]) -> bytes:
    """A seed file after a few of the mutations a fuzzer makes: flips, edge values, cuts, inserts."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)), label="seed")])
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(("flip", "edge-byte", "edge-word", "insert", "delete", "truncate", "repeat")))
        if kind == "flip" and data:
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif kind == "edge-byte" and data:
            data[where] = draw(st.sampled_from(EDGE_BYTES))
        elif kind == "edge-word":
            word = draw(st.sampled_from(EDGE_WORDS))
            data[where:where + len(word)] = word
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[where:where + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[where:]
        elif kind == "repeat":  # a chunk twice: duplicated headers, markers, rows
            data[where:where] = data[where:where + draw(st.integers(1, 64))]
    return bytes(data)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One folder for the CSV and sidecar files written from fuzzed bytes (one file, rewritten)."""
    return tmp_path_factory.mktemp("fuzz")


# ---------------------------------------------------------------- the seeds themselves are accepted


@pytest.mark.parametrize("name", sorted(IMAGE_SEEDS))
def test_every_image_seed_is_read_as_rgb_of_its_size(name):
    """The property's accepting side is exercised: each seed decodes, RGB, at its (rotated) size."""
    from facemask.images import load_image

    check_image(IMAGE_SEEDS[name])
    image = load_image(IMAGE_SEEDS[name])
    assert image.mode == "RGB"
    assert image.size == ((4, 6) if name == "rotated.jpg" else (6, 4))


def test_csv_and_sidecar_seeds_are_accepted(scratch):
    from facemask import annotations
    from facemask.sidecar import read_sidecar

    for name, data in CSV_SEEDS.items():
        (scratch / name).write_bytes(data)
        assert len(annotations.read_rows(scratch / name)) == (0 if name == "header-only.csv" else
                                                        {"kaggle.csv": 3}.get(name, 1))
    for name, data in SIDECAR_SEEDS.items():
        (scratch / name).write_bytes(data)
        assert len(read_sidecar(scratch / name)["class_names"]) >= 2


# ---------------------------------------------------------------- images


@bounded(2000)
@given(mutated(IMAGE_SEEDS))
def test_mutated_images_give_an_image_error_or_an_rgb_image(data):
    event(check_image(data))  # accepted or refused: --hypothesis-show-statistics shows the mix


@bounded(400)
@given(st.one_of(
    st.binary(max_size=64),
    # A real format's magic number, then anything: reaches each plugin's header parser.
    st.tuples(st.sampled_from([b"P6", b"P4\n", b"P1", b"BM", b"GIF89a", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff",
                               b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8L"]),
              st.binary(max_size=64)).map(b"".join),
))
@example(b"P6")
@example(b"P4\n\n\nx")
def test_random_bytes_give_an_image_error_or_an_rgb_image(data):
    event(check_image(data))  # accepted or refused: --hypothesis-show-statistics shows the mix


# ---------------------------------------------------------------- split.py's CSV reader

NUMBER_TOKENS = ("0", "10", "-5", "2.5", "1e308", "-1e308", "1.7e308", "2147483648", "-2147483649", "nan", "inf",
                 "-inf", "1_0", "0x10", " 7 ", "", "1e-400", "-0")
NAME_TOKENS = ("a.jpg", "dir/b.png", "./a.jpg", "../a.jpg", "/etc/a.jpg", "C:a.jpg", "\\\\host\\a.jpg", "", " ",
               "a\x00.jpg", "\u00e9.jpg")
CLASS_TOKENS = ("face_with_mask", "face_no_mask", "face_with_mask_incorrect", "hat", "")


@st.composite
def kaggle_csvs(draw: st.DrawFn) -> bytes:
    """A header (right or damaged), then rows in the Kaggle layout made of edge-case values, or
    rows of any fields, in one of the encodings a CSV arrives in."""
    header = draw(st.sampled_from(["name,x1,x2,y1,y2,classname", "name,x1,x2,y1,classname",
                                   "NAME, X1,X2,Y1,Y2,ClassName", "x1,x2,y1,y2,classname,name,extra"]))
    # Plausible values as often as edge cases: one bad row refuses the whole CSV, and the rows that
    # are accepted, with their extreme but finite values, are what the box arithmetic must survive.
    number = st.one_of(st.integers(-(10**4), 10**4).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.sampled_from(NUMBER_TOKENS))
    name = st.sampled_from(NAME_TOKENS) | st.text(min_size=1, max_size=6)
    kaggle_row = st.tuples(name, number, number, number, number, st.sampled_from(CLASS_TOKENS))
    any_row = st.lists(st.text(max_size=8), max_size=8)
    rows = draw(st.lists(st.one_of(kaggle_row, kaggle_row, any_row), max_size=4))
    text = "\n".join([header, *(",".join(row) for row in rows)])
    # Mostly UTF-8, the encoding the reader expects; a Latin-1 or UTF-16 file must be refused cleanly.
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


@bounded(600)
@given(st.one_of(mutated(CSV_SEEDS), kaggle_csvs(), st.binary(max_size=64)))
@example(b"name,x1,x2,y1,y2,classname\na.jpg,-1e308,0,1e308,10,face_with_mask\n")
def test_any_csv_gives_a_split_error_or_rows_that_can_be_cut(scratch, data):
    event(check_csv(data, scratch))  # accepted or refused: --hypothesis-show-statistics shows the mix


# Half inside a 640x480 photo, half any finite float (Hypothesis favours 1.8e308, -1.8e308, 5e-324):
# a box must overlap the photo before its margin is computed, and only an extreme side overflows it.
coordinate = st.floats(-100, 700) | st.floats(allow_nan=False, allow_infinity=False)


@bounded(300)
@given(st.tuples(coordinate, coordinate, coordinate, coordinate))
def test_any_finite_box_is_refused_or_can_be_cut(scratch, box):
    """Every finite coordinate parses, so the box arithmetic downstream must survive the extremes;
    byte mutation alone rarely builds them (atheris did not, in 27,000 CSVs on the unfixed reader)."""
    row = ",".join(["a.jpg", *map(repr, box), "face_with_mask"])
    event(check_csv(f"name,x1,x2,y1,y2,classname\n{row}\n".encode(), scratch))


# ---------------------------------------------------------------- model sidecars

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def sidecar_objects(draw: st.DrawFn) -> bytes:
    """Objects with the two keys the reader checks, each absent, right, nearly right, or any JSON."""
    meta = draw(st.dictionaries(st.text(max_size=6), JSON, max_size=2))
    name = st.sampled_from(["mask", "no-mask", "x", "\u00e9", "", " ", "a\tb", "a\nb"]) | st.text(min_size=1,
                                                                                                max_size=4)
    names = st.one_of(st.lists(name, min_size=2, max_size=4, unique=True), st.lists(name, max_size=4), JSON)
    size = (st.lists(st.integers(1, 512), min_size=2, max_size=2) | st.lists(st.integers(-2, 2), max_size=3)
            | st.lists(st.sampled_from([True, 1.0, 224.0, 10**30, None]), min_size=2, max_size=2) | JSON)
    if draw(st.sampled_from([True, True, True, False])):  # mostly present: its contents are what is checked
        meta["class_names"] = draw(names)
    if draw(st.booleans()):
        meta["image_size"] = draw(size)
    return json.dumps(meta, allow_nan=True).encode()


@bounded(600)
@given(st.one_of(mutated(SIDECAR_SEEDS), sidecar_objects(), sidecar_objects(),  # twice: mostly objects
                 JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=32)))
@example(b'["mask", "no-mask"]')
@example(b'{"image_size": [224, 224]}')
@example(b"[" * 100_000)
@example(b'{"class_names": ["mask", "no-mask"], "image_size": [' + b"9" * 5000 + b', 1]}')
def test_any_sidecar_gives_a_value_error_or_checked_names(scratch, data):
    event(check_sidecar(data, scratch))  # accepted or refused: --hypothesis-show-statistics shows the mix


# ---------------------------------------------------------------- regression: the PPM files


@pytest.mark.parametrize(("data", "reason"), [
    (b"P6", "Reached EOF while reading header"),
    (b"P4\n\n\nx", "invalid literal for int()"),
    (b"P5\n6 4\n\xea56\n" + b"X" * 24, "invalid literal for int()"),  # atheris' first find, seconds in
])
def test_truncated_ppm_headers_are_image_errors_naming_the_file(tmp_path, data, reason):
    from facemask.images import ImageError, load_image

    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="damaged or truncated") as caught:
        load_image(path)
    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)
    with pytest.raises(ImageError):
        load_image(io.BytesIO(data))


@pytest.fixture
def one_bad_between_good(tmp_path) -> list[Path]:
    """`printf 'P6' > bad.jpg` between two readable photos."""
    from PIL import Image

    paths = [tmp_path / "first.png", tmp_path / "bad.jpg", tmp_path / "last.jpg"]
    Image.new("RGB", (40, 30), (200, 40, 40)).save(paths[0])
    paths[1].write_bytes(b"P6")
    Image.new("RGB", (30, 40), (30, 60, 220)).save(paths[2])
    return paths


def test_predict_prints_one_error_line_for_the_p6_file_and_scores_the_others(colour_model_file,
                                                                              one_bad_between_good, capsys):
    from facemask.predict import main

    assert main(["--model", str(colour_model_file), *map(str, one_bad_between_good)]) == 1
    captured = capsys.readouterr()
    bad = one_bad_between_good[1]
    errors = [line for line in captured.err.splitlines() if line.startswith(f"error: {bad}")]
    assert len(errors) == 1 and "damaged or truncated" in errors[0]
    assert "Traceback" not in captured.err
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [str(one_bad_between_good[0]),
                                                                             str(one_bad_between_good[2])]


def test_detect_prints_one_error_line_for_the_p6_file_and_annotates_the_others(colour_model_file,
                                                                               one_bad_between_good, tmp_path,
                                                                               monkeypatch, capsys):
    from facemask import detect

    monkeypatch.setattr(detect, "make_face_detector", lambda name: FixedFaces())  # no face: no MTCNN needed
    out = tmp_path / "out"
    assert detect.main(["--model", str(colour_model_file), *map(str, one_bad_between_good), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    bad = one_bad_between_good[1]
    assert [line for line in captured.err.splitlines() if line.startswith("error:")] == [
        line for line in captured.err.splitlines() if line.startswith(f"error: {bad}: damaged or truncated")]
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert [line.split(":")[0] for line in captured.out.splitlines()] == ["first.png", "last.jpg"]
    assert sorted(p.name for p in out.iterdir()) == ["first.json", "first_annotated.png", "last.json",
                                                    "last_annotated.jpg"]


# ---------------------------------------------------------------- regression: CSV coordinates


@pytest.mark.parametrize("row", [
    "a.jpg,-1e308,0,1e308,10,face_with_mask",  # the box's width is inf: `cannot convert float NaN`
    "a.jpg,0,0,1.7e308,10,face_with_mask",     # finite, until a margin is added
    "a.jpg,0,0,10,2147483649,face_no_mask",
    # Hypothesis' finds on the unfixed reader: a finite side that the margin pushes past 1.8e308.
    "a.jpg,0.0,-8.98846567431158e+307,1.0,1.0,face_with_mask",
    "a.jpg,0.0,0.0,1.0,8.98846567431158e+307,face_with_mask",
])
def test_coordinates_beyond_any_photo_are_a_split_error_naming_line_and_column(tmp_path, row):
    from facemask import annotations

    path = tmp_path / "train.csv"
    path.write_text(f"name,x1,x2,y1,y2,classname\n{row}\n")
    with pytest.raises(annotations.AnnotationError, match=r"line 2, column '(x1|x2|y1|y2)' .*not a pixel coordinate"):
        annotations.read_rows(path)


def test_split_command_reports_a_huge_coordinate_as_one_error_line(tmp_path, capsys):
    from PIL import Image

    from facemask import annotations, split

    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "train.csv").write_text("name,x1,x2,y1,y2,classname\na.jpg,-1e308,0,1e308,10,face_with_mask\n")
    code = split.main([str(tmp_path / "images"), str(tmp_path / "train.csv"), "80", "10", "10",
                       "--out", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 1
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {tmp_path / 'train.csv'}: line 2, column 'x1' (xmin): '-1e308' is not a pixel coordinate "
        f"(beyond ±{annotations.MAX_COORDINATE:g})"]
    assert "Traceback" not in err
