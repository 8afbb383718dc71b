"""split.py (facemask.split): every rule on tiny photos and CSVs made here, plus the real data when present."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHARED, requires_shared
from PIL import Image

from facemask import CLASS_NAMES, DEFAULT_MARGIN, SPLITS, annotations, split, splitting
from facemask.images import face_box, load_image

HEADER = ["name", "x1", "x2", "y1", "y2", "classname"]


def make_photo(path: Path, size=(100, 80), mode="RGB", fmt=None) -> Path:
    """A photo whose every pixel encodes its position (R = x, G = y), so crops can be checked."""
    width, height = size
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    pixels = np.stack([xs % 256, ys % 256, np.full_like(xs, 128)], axis=-1).astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **({"quality": 95} if path.suffix in (".jpg", ".jpeg") else {}))
    return path


def write_csv(path: Path, rows: list, header=HEADER) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def exit_code(argv: list[str]) -> int:
    """split.main's exit code, usage errors included (argparse exits with 2)."""
    try:
        return split.main(argv)
    except SystemExit as exited:
        return exited.code


def run(tmp_path: Path, rows: list, *extra: str, header=HEADER, ratios=("100", "0", "0"), out=None):
    """split.main on tmp_path/images + a CSV of `rows`; returns (exit code, output folder)."""
    csv_path = write_csv(tmp_path / "train.csv", rows, header)
    out = out or tmp_path / "data"
    argv = [str(tmp_path / "images"), str(csv_path), *ratios, "--out", str(out), "--workers", "1", *extra]
    return exit_code(argv), out


def manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def summary_counts(printed: str) -> dict[str, int]:
    """The indented `label  count` lines of split.py's summary."""
    return {line.rsplit(None, 1)[0].strip(): int(line.rsplit(None, 1)[1]) for line in printed.splitlines()
            if line.startswith("  ")}


def leftovers(tmp_path: Path) -> list[str]:
    """Temporary folders split.py may have left beside its output."""
    return [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- boxes and classes


def test_column_trap_numbers_are_xmin_ymin_xmax_ymax(tmp_path):
    make_photo(tmp_path / "images" / "a.png")
    code, out = run(tmp_path, [["a.png", 10, 20, 40, 60, "face_with_mask"]], "--margin", "0")
    assert code == 0
    (row,) = manifest(out)
    assert (row["xmin"], row["ymin"], row["xmax"], row["ymax"]) == ("10", "20", "40", "60")
    crop = np.asarray(Image.open(out / row["path"]))
    assert crop.shape == (40, 30, 3)  # 30 wide (x 10..40), 40 high (y 20..60)
    assert crop[0, 0, 0] == 10 and crop[0, 0, 1] == 20 and crop[-1, -1, 0] == 39 and crop[-1, -1, 1] == 59


def test_columns_found_by_name_in_any_order_with_extras(tmp_path):
    make_photo(tmp_path / "images" / "a.png")
    header = ["classname", "y2", "extra", "x1", "name", "y1", "x2"]
    code, out = run(tmp_path, [["face_no_mask", 60, "junk", 10, "a.png", 40, 20]], "--margin", "0", header=header)
    assert code == 0
    (row,) = manifest(out)
    assert (row["label"], row["xmin"], row["ymin"], row["xmax"], row["ymax"]) == ("no-mask", "10", "20", "40", "60")


def test_boxes_are_clipped_and_empty_ones_skipped(tmp_path, capsys):
    make_photo(tmp_path / "images" / "a.png", size=(100, 80))
    rows = [
        ["a.png", -10, -5, 30, 20, "face_with_mask"],  # clipped at the top-left corner
        ["a.png", 90, 70, 150, 120, "face_with_mask"],  # clipped at the bottom-right corner
        ["a.png", 200, 10, 250, 40, "face_with_mask"],  # entirely outside: empty after clipping
        ["a.png", 50, 50, 50, 50, "face_with_mask"],  # zero area, like wobot's row 8131
        ["a.png", 60, 10, 40, 30, "face_no_mask"],  # xmax < xmin
    ]
    code, out = run(tmp_path, rows, "--margin", "0")
    assert code == 0
    boxes = {int(r["csv_line"]): tuple(int(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")) for r in manifest(out)}
    assert boxes == {2: (0, 0, 30, 20), 3: (90, 70, 100, 80)}
    assert Image.open(out / "train/mask/a_r3.png").size == (10, 10)
    assert summary_counts(capsys.readouterr().out)["box empty or outside the photo"] == 3
    empty = annotations.BoxRow(5, "a.png", "face_with_mask", 50, 50, 50, 50)
    assert splitting.crop_box(empty, 100, 80) == splitting.SKIP_EMPTY


def test_summary_counts_skips_and_rules(tmp_path, capsys):
    make_photo(tmp_path / "images" / "a.png")
    rows = [
        ["a.png", 10, 10, 40, 40, "face_with_mask"],
        ["a.png", 200, 10, 250, 40, "face_no_mask"],  # outside
        ["a.png", 50, 10, 54, 40, "face_no_mask"],  # 4 px wide, under --min-size 5
        ["a.png", 60, 10, 90, 40, "face_with_mask_incorrect"],
        ["a.png", 0, 0, 10, 10, "hat"],
    ]
    code, _ = run(tmp_path, rows, "--min-size", "5")
    assert code == 0
    summary = summary_counts(capsys.readouterr().out)
    assert summary["face_with_mask -> mask"] == 1
    assert summary["face_no_mask -> no-mask"] == 2
    assert summary["face_with_mask_incorrect -> dropped (--incorrect drop)"] == 1
    assert summary["other classes -> ignored (not faces)"] == 1
    assert summary["box empty or outside the photo"] == 1
    assert summary["face smaller than --min-size"] == 1


@pytest.mark.parametrize("incorrect, expected", [("drop", {"mask": 1, "no-mask": 1}),
                                                 ("mask", {"mask": 3, "no-mask": 1}),
                                                 ("no-mask", {"mask": 1, "no-mask": 3})])
def test_classes_and_incorrect_rule(tmp_path, incorrect, expected):
    make_photo(tmp_path / "images" / "a.png")
    rows = [
        ["a.png", 0, 0, 10, 10, "face_with_mask"],
        ["a.png", 10, 0, 20, 10, "face_no_mask"],
        ["a.png", 20, 0, 30, 10, "face_with_mask_incorrect"],
        ["a.png", 30, 0, 40, 10, "face_with_mask_incorrect"],
        ["a.png", 40, 0, 50, 10, "mask_surgical"],
        ["a.png", 50, 0, 60, 10, "eyeglasses"],
    ]
    code, out = run(tmp_path, rows, "--incorrect", incorrect)
    assert code == 0
    rows_out = manifest(out)
    assert Counter(r["label"] for r in rows_out) == expected
    assert {r["classname"] for r in rows_out} <= {"face_with_mask", "face_no_mask", "face_with_mask_incorrect"}
    for label, n in expected.items():
        assert len(list((out / "train" / label).iterdir())) == n


def test_margin_widens_every_side_then_clips(tmp_path):
    make_photo(tmp_path / "images" / "a.png", size=(100, 80))
    rows = [["a.png", 40, 40, 60, 60, "face_with_mask"], ["a.png", 2, 2, 22, 12, "face_with_mask"]]
    code, out = run(tmp_path, rows, "--margin", "0.5")
    assert code == 0
    boxes = [tuple(int(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")) for r in manifest(out)]
    assert boxes == [(30, 30, 70, 70), (0, 0, 32, 17)]


def test_min_size_measures_the_shorter_side(tmp_path):
    make_photo(tmp_path / "images" / "a.png")
    rows = [["a.png", 0, 0, 30, 9, "face_with_mask"], ["a.png", 0, 20, 10, 50, "face_with_mask"]]
    code, out = run(tmp_path, rows, "--min-size", "10")
    assert code == 0
    assert [r["csv_line"] for r in manifest(out)] == ["3"]


def test_the_default_margin_and_box_are_detections(tmp_path):
    make_photo(tmp_path / "images" / "a.png", size=(100, 80))
    rows = [["a.png", 40, 30, 62, 52, "face_with_mask"], ["a.png", 1, 3, 21, 15, "face_no_mask"]]
    code, out = run(tmp_path, rows)
    assert code == 0
    boxes = [tuple(int(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")) for r in manifest(out)]
    # DEFAULT_MARGIN (0.1) of 22 px is 2.2 px a side, rounded as detection rounds it; clipped at the edge.
    assert DEFAULT_MARGIN == 0.1
    assert boxes == [(38, 28, 64, 54), (0, 2, 23, 16)]
    assert boxes == [face_box(row[1:5], DEFAULT_MARGIN, 100, 80) for row in rows]


def test_crops_are_lossless_rgb_pngs_of_the_upright_photo(tmp_path):
    images = tmp_path / "images"
    make_photo(images / "rgb.jpg")
    make_photo(images / "gray.png", mode="L")
    make_photo(images / "palette.png", mode="P")
    make_photo(images / "cmyk.jpg", mode="CMYK")
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # fully transparent black
    rgba.save(images / "alpha.png")
    deep = np.full((40, 40), 40000, dtype=np.uint16)  # 16-bit grey: 40000 / 257 = 155.6 on 8 bits
    Image.fromarray(deep).save(images / "deep.png")
    names = ["rgb.jpg", "gray.png", "palette.png", "cmyk.jpg", "alpha.png", "deep.png"]
    code, out = run(tmp_path, [[n, 5, 5, 25, 25, "face_with_mask"] for n in names], "--margin", "0")
    assert code == 0
    paths = {r["source"]: out / r["path"] for r in manifest(out)}
    for name, path in paths.items():
        assert path.name == f"{Path(name).stem}_r{names.index(name) + 2}.png"
        with Image.open(path) as crop:
            assert crop.format == "PNG" and crop.mode == "RGB", name
        # Lossless: the crop holds exactly the pixels detection cuts from the photo it reads.
        np.testing.assert_array_equal(np.asarray(Image.open(path)),
                                      np.asarray(load_image(images / name).crop((5, 5, 25, 25))), err_msg=name)
    assert np.asarray(Image.open(paths["alpha.png"])).min() == 255  # transparency becomes white, not black
    assert np.asarray(Image.open(paths["deep.png"])).max() == 155  # 16-bit scaled down, not clipped to white


def test_exif_orientation_is_applied_before_cutting(tmp_path):
    # Stored 100 wide and 80 high, tagged "rotate 90 degrees clockwise to view": upright it is 80x100,
    # and the CSV's boxes (drawn on the upright photo) are cut from the upright pixels.
    photo = make_photo(tmp_path / "images" / "turned.jpg", size=(100, 80))
    stored = Image.open(photo)
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(photo, exif=exif, quality=95)
    code, out = run(tmp_path, [["turned.jpg", 50, 70, 80, 100, "face_no_mask"]], "--margin", "0")
    assert code == 0
    (row,) = manifest(out)
    assert (row["xmin"], row["ymin"], row["xmax"], row["ymax"]) == ("50", "70", "80", "100")  # not clipped at 80
    upright = load_image(photo)
    assert upright.size == (80, 100)
    np.testing.assert_array_equal(np.asarray(Image.open(out / row["path"])),
                                  np.asarray(upright.crop((50, 70, 80, 100))))


def test_each_photo_is_decoded_once_for_all_its_faces(tmp_path, monkeypatch):
    make_photo(tmp_path / "images" / "a.png")
    make_photo(tmp_path / "images" / "b.jpg")
    opened = Counter()
    real_open = splitting.Image.open

    def counting_open(path, *args, **kwargs):
        opened[Path(path).name] += 1
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(splitting.Image, "open", counting_open)
    rows = [["a.png", 10 * i, 0, 10 * i + 8, 8, "face_with_mask"] for i in range(5)]
    rows += [["b.jpg", 10 * i, 20, 10 * i + 8, 28, "face_no_mask"] for i in range(3)]
    code, out = run(tmp_path, rows)
    assert code == 0 and len(manifest(out)) == 8
    assert opened == {"a.png": 2, "b.jpg": 2}  # one header read while planning, one decode for all its faces


def test_crop_names_trace_back_to_photo_and_csv_line(tmp_path):
    make_photo(tmp_path / "images" / "sub" / "photo one.jpg")
    rows = [["hat.png", 0, 0, 5, 5, "hat"], ["sub/photo one.jpg", 0, 0, 10, 10, "face_no_mask"]]
    make_photo(tmp_path / "images" / "hat.png")
    code, out = run(tmp_path, rows)
    assert code == 0
    (row,) = manifest(out)
    assert row["path"] == "train/no-mask/photo one_r3.png" and row["source"] == "sub/photo one.jpg"
    assert (out / row["path"]).is_file()


# ---------------------------------------------------------------- the split


def make_many(tmp_path: Path, photos: int = 60, seed: int = 0) -> list:
    """Tiny photos with 1 to 6 faces each, about 70% masked."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(photos):
        make_photo(tmp_path / "images" / f"p{i:03d}.png", size=(70, 12))
        for k in range(int(rng.integers(1, 7))):
            label = "face_with_mask" if rng.random() < 0.7 else "face_no_mask"
            rows.append([f"p{i:03d}.png", 10 * k, 0, 10 * k + 8, 10, label])
    return rows


def test_split_groups_by_photo_and_follows_ratios(tmp_path):
    rows = make_many(tmp_path)
    code, out = run(tmp_path, rows, ratios=("60", "20", "20"))
    assert code == 0
    crops = manifest(out)
    assert len(crops) == len(rows)
    splits_of = {}
    for r in crops:
        splits_of.setdefault(r["source"], set()).add(r["split"])
        assert (out / r["path"]).is_file() and r["path"].startswith(f"{r['split']}/{r['label']}/")
    assert all(len(s) == 1 for s in splits_of.values())  # no photo in two splits
    sizes = Counter(r["split"] for r in crops)
    for name, share in zip(SPLITS, (0.6, 0.2, 0.2), strict=True):
        assert abs(sizes[name] / len(crops) - share) <= 0.02
    assert len(list(out.rglob("*.png"))) == len(crops)


def test_assignment_is_stratified_and_within_two_points():
    rng = np.random.default_rng(1)
    counts = {}
    for i in range(400):  # 400 photos, 1 to 12 faces, each photo mostly one class
        n, p = int(rng.integers(1, 13)), rng.choice([0.9, 0.3])
        masked = int(rng.binomial(n, p))
        counts[f"p{i}"] = Counter({"mask": masked, "no-mask": n - masked})
    ratios = np.array([0.7, 0.2, 0.1])
    assignment = splitting.assign_splits(counts, ratios, seed=3)
    totals = {s: Counter() for s in SPLITS}
    for name, s in assignment.items():
        totals[s].update(counts[name])
    everything = sum(totals.values(), Counter())
    whole_mask_share = everything["mask"] / everything.total()
    for s, share in zip(SPLITS, ratios, strict=True):
        assert abs(totals[s].total() / everything.total() - share) <= 0.02
        assert abs(totals[s]["mask"] / totals[s].total() - whole_mask_share) <= 0.02


def test_zero_share_and_fractions(tmp_path):
    rows = make_many(tmp_path, photos=20)
    code, out = run(tmp_path, rows, ratios=("90", "10", "0"))
    assert code == 0
    assert {r["split"] for r in manifest(out)} == {"train", "valid"}
    assert not (out / "test").exists()
    code, out_fractions = run(tmp_path, rows, ratios=("0.9", "0.1", "0"), out=tmp_path / "fractions")
    assert code == 0
    assert tree_bytes(out) == tree_bytes(out_fractions)


def test_same_seed_gives_byte_identical_output_whatever_the_workers(tmp_path):
    rows = make_many(tmp_path, photos=30)
    code1, one = run(tmp_path, rows, "--seed", "7", ratios=("70", "15", "15"), out=tmp_path / "one")
    csv_path = tmp_path / "train.csv"
    code2 = split.main([str(tmp_path / "images"), str(csv_path), "70", "15", "15", "--out", str(tmp_path / "two"),
                        "--seed", "7", "--workers", "2"])
    assert code1 == code2 == 0
    assert tree_bytes(one) == tree_bytes(tmp_path / "two")
    code3, other = run(tmp_path, rows, "--seed", "8", ratios=("70", "15", "15"), out=tmp_path / "other")
    assert code3 == 0
    assignment = {r["source"]: r["split"] for r in manifest(one)}
    assert assignment != {r["source"]: r["split"] for r in manifest(other)}


def test_the_real_sample_gives_the_same_bytes_every_run_whatever_the_workers(real_sample_dir, tmp_path):
    argv = [str(real_sample_dir / "images"), str(real_sample_dir / "train.csv"), "70", "15", "15"]
    for name, workers in (("one", "1"), ("two", "2"), ("again", "1")):
        assert split.main([*argv, "--out", str(tmp_path / name), "--workers", workers]) == 0
    one = tree_bytes(tmp_path / "one")
    assert {"manifest.csv", "split.json"} <= set(one) and len(one) == len(manifest(tmp_path / "one")) + 2
    assert one == tree_bytes(tmp_path / "two") == tree_bytes(tmp_path / "again")


# ---------------------------------------------------------------- the output folder


def test_non_empty_output_is_refused_without_force_and_replaced_with_it(tmp_path, capsys):
    make_photo(tmp_path / "images" / "a.png")
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    rows = [["a.png", 0, 0, 10, 10, "face_with_mask"]]
    code, _ = run(tmp_path, rows)
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(out) in err and "--force" in err
    assert (out / "old.txt").read_text() == "keep me"
    code, _ = run(tmp_path, rows, "--force")
    assert code == 0
    assert not (out / "old.txt").exists() and (out / "manifest.csv").is_file()
    assert leftovers(tmp_path) == []


def test_an_empty_existing_output_folder_is_used(tmp_path):
    make_photo(tmp_path / "images" / "a.png")
    (tmp_path / "data").mkdir()
    code, out = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"]])
    assert code == 0 and len(manifest(out)) == 1


def test_force_never_deletes_the_inputs(tmp_path, capsys):
    make_photo(tmp_path / "images" / "a.png")
    code, _ = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"]], "--force", out=tmp_path)
    assert code == 1
    assert "refusing" in capsys.readouterr().err
    assert (tmp_path / "images" / "a.png").is_file()


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_run_leaves_no_partial_output(tmp_path, monkeypatch, interruption, existing):
    rows = make_many(tmp_path, photos=10)
    out = tmp_path / "data"
    if existing:
        out.mkdir()
        (out / "old.txt").write_text("previous run")
    saved = []
    real_save = splitting.save_crop

    def failing_save(image, box, path):
        if len(saved) == 5:
            raise interruption("disk full" if interruption is OSError else "")
        saved.append(Path(path))
        real_save(image, box, path)

    monkeypatch.setattr(splitting, "save_crop", failing_save)
    code, _ = run(tmp_path, rows, "--force")
    assert code == (130 if interruption is KeyboardInterrupt else 1)
    assert len(saved) == 5 and not any(p.exists() for p in saved)
    assert leftovers(tmp_path) == []
    if existing:
        assert [p.name for p in out.iterdir()] == ["old.txt"]  # the previous output is untouched
    else:
        assert not out.exists()


# ---------------------------------------------------------------- bad input


def check_error(capsys, code: int, expected_code: int, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == expected_code, err
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("header, row, words", [
    (HEADER, ["a.png", 0, "abc", 10, 10, "face_with_mask"], ["line 3", "'x2'", "'abc'"]),
    (HEADER, ["a.png", 0, 0, "", 10, "face_with_mask"], ["line 3", "'y1'", "not a number"]),
    (["name", "x1", "x2", "y1", "classname"], ["a.png", 0, 0, 10, "face_with_mask"], ["y2", "missing column"]),
    (["x1", "x2", "y1", "y2", "classname"], [0, 0, 10, 10, "face_with_mask"], ["name", "missing column"]),
    (["name", "x1", "x2", "y1", "y2"], ["a.png", 0, 0, 10, 10], ["classname", "missing column"]),
    (HEADER, ["/etc/a.png", 0, 0, 10, 10, "face_with_mask"], ["line 3", "'name'", "absolute"]),
    (HEADER, ["../a.png", 0, 0, 10, 10, "face_with_mask"], ["line 3", "'name'", "climbs out"]),
    (HEADER, ["sub/../../a.png", 0, 0, 10, 10, "face_with_mask"], ["line 3", "climbs out"]),
])
def test_bad_csv_contents(tmp_path, capsys, header, row, words):
    make_photo(tmp_path / "images" / "a.png")
    code, out = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"], row], header=header)
    check_error(capsys, code, 1, str(tmp_path / "train.csv"), *words)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("content", [None, b"", b"\xff\xfe\x00bad\x80\x81 binary", "directory"])
def test_missing_or_unreadable_csv(tmp_path, capsys, content):
    make_photo(tmp_path / "images" / "a.png")
    csv_path = tmp_path / "train.csv"
    if content == "directory":
        csv_path.mkdir()
    elif content is not None:
        csv_path.write_bytes(content)
    code = split.main([str(tmp_path / "images"), str(csv_path), "80", "10", "10", "--out", str(tmp_path / "data")])
    check_error(capsys, code, 1, str(csv_path))
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("ratios, words", [
    (("80", "-10", "30"), ["valid", "'-10'"]),
    (("80", "ten", "10"), ["valid", "'ten'", "not a number"]),
    (("80", "15", "15"), ["sum to 110"]),
    (("0.8", "0.1", "0.05"), ["sum to 0.95"]),
    (("0", "0", "0"), ["sum to 0"]),
    (("nan", "50", "50"), ["train", "'nan'"]),
])
def test_bad_ratios(tmp_path, capsys, ratios, words):
    make_photo(tmp_path / "images" / "a.png")
    code, out = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"]], ratios=ratios)
    check_error(capsys, code, 2, *words)
    assert not out.exists()


def test_missing_images_folder(tmp_path, capsys):
    code, out = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"]])
    check_error(capsys, code, 1, str(tmp_path / "images"), "not found")
    assert not out.exists()


def test_wrong_images_folder(tmp_path, capsys):
    make_photo(tmp_path / "images" / "other.png")
    code, out = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"], ["b.png", 0, 0, 10, 10, "face_no_mask"]])
    check_error(capsys, code, 1, "none of its 2 photos", str(tmp_path / "images"))
    assert not out.exists()


def test_missing_and_unreadable_photos_are_warned_counted_and_skipped(tmp_path, capsys):
    images = tmp_path / "images"
    make_photo(images / "good.jpg")
    (images / "text.jpg").write_text("not an image")
    truncated = make_photo(images / "cut.jpg", size=(400, 300)).read_bytes()
    (images / "cut.jpg").write_bytes(truncated[: len(truncated) // 2])  # header fine, pixels missing
    rows = [["good.jpg", 0, 0, 10, 10, "face_with_mask"], ["gone.jpg", 0, 0, 10, 10, "face_with_mask"],
            ["text.jpg", 0, 0, 10, 10, "face_no_mask"], ["cut.jpg", 0, 0, 10, 10, "face_no_mask"],
            ["cut.jpg", 20, 20, 30, 30, "face_no_mask"]]
    code, out = run(tmp_path, rows)
    captured = capsys.readouterr()
    assert code == 0
    assert [r["source"] for r in manifest(out)] == ["good.jpg"]
    assert sorted(p.name for p in out.rglob("*.png")) == ["good_r2.png"]
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and all(any(n in w for w in warnings) for n in ("gone.jpg", "text.jpg", "cut.jpg"))
    summary = summary_counts(captured.out)
    assert summary["photo not found (1 photos)"] == 1
    assert summary["photo unreadable (2 photos)"] == 3


def test_help_and_usage_errors_in_process(capsys):
    assert exit_code(["--help"]) == 0
    assert "usage:" in capsys.readouterr().out
    assert exit_code(["images", "train.csv", "80", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and "error: the following arguments are required: test" in err


@pytest.mark.slow
@pytest.mark.parametrize("args", [[], ["images", "train.csv", "80", "20"]])
def test_script_prints_usage_for_too_few_arguments(args):
    result = subprocess.run([sys.executable, str(ROOT / "split.py"), *args], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: split.py") and "\nerror: " in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_script_runs_end_to_end_with_two_workers(real_sample_dir, tmp_path):
    out = tmp_path / "data"
    cmd = [sys.executable, str(ROOT / "split.py"), str(real_sample_dir / "images"), str(real_sample_dir / "train.csv"),
           "0.7", "0.15", "0.15", "--out", str(out), "--workers", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "cutting" in result.stderr  # the progress bar
    assert result.stdout.splitlines()[1].split() == ["split", "mask", "no-mask", "total", "share", "mask", "%"]
    assert len(manifest(out)) == len(list(out.rglob("*_r*.*")))


def test_sample_crops_fixture_layout(sample_crops):
    for s in SPLITS:
        for label in CLASS_NAMES:
            assert any((sample_crops / s / label).iterdir()), f"{s}/{label} is empty"


# ---------------------------------------------------------------- the real data


@requires_shared
def test_kaggle_format_all_boxes_accounted_for_no_leak_ratios_kept(tmp_path, capsys):
    folder = SHARED / "kaggle-format"
    out = tmp_path / "data"
    code = split.main([str(folder / "images"), str(folder / "train.csv"), "80", "15", "5", "--out", str(out),
                       "--workers", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    with open(folder / "train.csv", newline="") as f:
        total_rows = sum(1 for _ in csv.DictReader(f))
    assert total_rows == 1422
    summary = summary_counts(printed)
    crops = manifest(out)
    dropped = summary["face_with_mask_incorrect -> dropped (--incorrect drop)"]
    skipped = sum(n for rule, n in summary.items() if "->" not in rule)
    assert dropped == 44
    assert len(crops) + dropped + skipped + summary["other classes -> ignored (not faces)"] == 1422
    assert len(crops) == len([p for p in out.rglob("*") if p.suffix in (".jpg", ".png")])
    splits_of = {}
    for r in crops:
        splits_of.setdefault(r["source"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    sizes = Counter(r["split"] for r in crops)
    whole_mask = sum(r["label"] == "mask" for r in crops) / len(crops)
    for name, share in zip(SPLITS, (0.80, 0.15, 0.05), strict=True):
        assert abs(sizes[name] / len(crops) - share) <= 0.02
        in_split = [r for r in crops if r["split"] == name]
        assert abs(sum(r["label"] == "mask" for r in in_split) / len(in_split) - whole_mask) <= 0.03


@requires_shared
def test_wobot_csv_parses_with_the_readme_counts():
    rows = annotations.read_rows(SHARED / "wobot" / "train.csv")
    assert len(rows) == 15412
    assert len({r.name for r in rows}) == 4326
    classes = Counter(r.classname for r in rows)
    assert len(classes) == 20
    faces, taken = annotations.apply_class_rules(rows, "drop")
    assert (classes["face_with_mask"], classes["face_no_mask"], classes["face_with_mask_incorrect"]) == (
        4180, 1569, 150)
    assert len(faces) == 4180 + 1569
    assert taken["other classes -> ignored (not faces)"] == 15412 - 4180 - 1569 - 150
    # The column trap: column 2 < column 4 and column 3 < column 5 on every row but the zero-area one.
    odd = [r for r in rows if not (r.xmin < r.xmax and r.ymin < r.ymax)]
    assert [(r.line, r.name, r.classname) for r in odd] == [(8133, "1861.jpg", "face_with_mask_incorrect")]
    assert splitting.crop_box(odd[0], 2000, 2000) == splitting.SKIP_EMPTY


# ---------------------------------------------------------------- hostile input and signals


def test_sigterm_mid_run_leaves_no_partial_output(tmp_path, monkeypatch, capsys):
    import os
    import signal

    rows = make_many(tmp_path, photos=10)
    saved = []
    real_save = splitting.save_crop

    def save_then_get_killed(image, box, path):
        if len(saved) == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill`, `timeout` and service managers send
        saved.append(Path(path))
        real_save(image, box, path)

    monkeypatch.setattr(splitting, "save_crop", save_then_get_killed)
    code, out = run(tmp_path, rows)
    assert code == 128 + signal.SIGTERM
    check_error(capsys, code, code, "terminated", "no output was written")
    assert not out.exists() and leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is split.main's only


@pytest.mark.slow
def test_sigterm_to_the_script_with_two_workers_leaves_no_partial_output(tmp_path):
    """As `timeout` does it: SIGTERM to the process, while its two worker threads cut photos."""
    import signal
    import time

    rows = []
    for i in range(400):
        make_photo(tmp_path / "images" / f"p{i:03d}.png", size=(200, 20))
        rows += [[f"p{i:03d}.png", 10 * k, 0, 10 * k + 8, 10, "face_with_mask"] for k in range(19)]
    csv_path = write_csv(tmp_path / "train.csv", rows)
    out = tmp_path / "data"
    process = subprocess.Popen([sys.executable, str(ROOT / "split.py"), str(tmp_path / "images"), str(csv_path),
                                "100", "0", "0", "--out", str(out), "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.is_file() for p in tmp_path.glob(".data.*.partial/train/mask/*")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no crop was written in 120 s"
            time.sleep(0.05)
        process.terminate()
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: terminated (SIGTERM); no output was written"]
    assert "Traceback" not in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_one_photo_spelt_two_ways_lands_in_one_split(tmp_path):
    rows = []
    for i in range(40):
        make_photo(tmp_path / "images" / f"p{i:02d}.png", size=(40, 12))
        rows += [[f"./p{i:02d}.png", 0, 0, 8, 10, "face_with_mask"], [f"p{i:02d}.png", 10, 0, 18, 10, "face_no_mask"],
                 [f".//p{i:02d}.png", 20, 0, 28, 10, "face_no_mask"]]
    code, out = run(tmp_path, rows, ratios=("50", "50", "0"))
    assert code == 0
    splits_of: dict[str, set[str]] = {}
    for row in manifest(out):
        splits_of.setdefault(row["source"], set()).add(row["split"])
    assert sorted(splits_of) == [f"p{i:02d}.png" for i in range(40)]  # one name per photo, as on disk
    assert all(len(splits) == 1 for splits in splits_of.values())


@pytest.mark.parametrize(("value", "words"), [
    ("1e308", ["line 3", "'x1'", "'1e308'", "not a pixel coordinate"]),
    ("-1e308", ["line 3", "'x1'", "'-1e308'", "not a pixel coordinate"]),
    ("inf", ["line 3", "'x1'", "'inf'", "not a number"]),
])
def test_absurd_box_coordinates_give_one_error_line(tmp_path, capsys, value, words):
    make_photo(tmp_path / "images" / "a.png")
    code, out = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"],
                               ["a.png", value, 0, "1e308", 10, "face_with_mask"]])
    check_error(capsys, code, 1, str(tmp_path / "train.csv"), *words)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(("option", "value"), [("--margin", "inf"), ("--margin", "1e308"), ("--margin", "nan"),
                                               ("--margin", "-1"), ("--seed", "-1"), ("--seed", "x")])
def test_absurd_options_give_one_error_line(tmp_path, capsys, option, value):
    make_photo(tmp_path / "images" / "a.png")
    code, out = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"]], option, value)
    check_error(capsys, code, 2, option, repr(value))
    assert not out.exists()


def test_an_output_path_inside_a_file_is_refused_before_any_work(tmp_path, capsys):
    make_photo(tmp_path / "images" / "a.png")
    (tmp_path / "taken").write_text("a file")
    code, out = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"]], out=tmp_path / "taken" / "data")
    check_error(capsys, code, 1, str(out), "is not a folder")
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_photo_name_over_255_bytes_is_skipped_with_a_warning(tmp_path, capsys):
    make_photo(tmp_path / "images" / "a.png")
    long_name = "x" * 300 + ".png"
    code, out = run(tmp_path, [["a.png", 0, 0, 10, 10, "face_with_mask"], [long_name, 0, 0, 10, 10, "face_no_mask"],
                               ["y" * 250 + ".png", 0, 0, 10, 10, "face_no_mask"]])  # exists? its crops' names can't
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("photo name too long" in line for line in warnings)
    assert summary_counts(captured.out)["photo name too long for its crops' file names (2 photos)"] == 2
    assert [row["source"] for row in manifest(out)] == ["a.png"]


def test_the_margin_the_crops_were_cut_with_is_recorded_for_training(tmp_path):
    make_photo(tmp_path / "images" / "a.png")
    code, out = run(tmp_path, [["a.png", 10, 10, 40, 40, "face_with_mask"]], "--margin", "0.25")
    assert code == 0 and json.loads((out / "split.json").read_text()) == {"margin": 0.25}
    assert splitting.read_crop_margin(out) == 0.25
    # Crops cut before the margin was recorded (or by another program) were cut at the default.
    (out / "split.json").unlink()
    assert splitting.read_crop_margin(out) == DEFAULT_MARGIN
    for bad, words in [('{"margin": -1}', "'margin' must be a number from 0 to 10, not -1"),
                       ('{"margin": "0.1"}', "'margin' must be a number"), ("{", "cannot read the crops' margin"),
                       ("[]", "cannot read the crops' margin")]:
        (out / "split.json").write_text(bad)
        with pytest.raises(splitting.SplitError, match=rf"^{out / 'split.json'}: .*{re.escape(words)}"):
            splitting.read_crop_margin(out)
