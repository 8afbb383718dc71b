"""The one reader of the Kaggle train.csv: rows under their real meaning, class rules, the evaluation's truth."""

from __future__ import annotations

import pytest

from facemask.annotations import AnnotationError, apply_class_rules, read_rows, read_truth

CSV = """name,x1,x2,y1,y2,classname
a.jpg,10,20,30,40,face_with_mask
a.jpg,1,2,3,4,hat
./b.jpg,5,6,7,8,face_with_mask_incorrect
c.jpg,0,0,9,9,face_no_mask

d.jpg,1,1,2,2,sunglasses
"""


def test_columns_hold_xmin_ymin_xmax_ymax_whatever_the_header_says(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    first, *_, last = read_rows(path)
    assert (first.line, first.name, first.classname) == (2, "a.jpg", "face_with_mask")
    assert (first.xmin, first.ymin, first.xmax, first.ymax) == (10, 20, 30, 40)
    assert last.line == 7  # the blank line skipped, lines still counted as in the file


def test_class_rules_count_every_rule_and_label_the_faces(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    faces, taken = apply_class_rules(read_rows(path), "drop")
    assert [(row.name, label) for row, label in faces] == [("a.jpg", "mask"), ("c.jpg", "no-mask")]
    assert list(taken.values()) == [1, 1, 1, 2]


def test_truth_counts_an_incorrect_mask_as_no_mask_and_skips_object_rows(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    truth = read_truth(path)
    assert sorted(truth) == ["a.jpg", "b.jpg", "c.jpg"]  # ./b.jpg is b.jpg; d.jpg holds no face
    assert [(face.box, face.label) for face in truth["a.jpg"]] == [((10, 20, 30, 40), "mask")]
    assert [(face.label, face.classname) for face in truth["b.jpg"]] == [("no-mask", "face_with_mask_incorrect")]


def test_truth_without_face_rows_or_with_a_bad_row_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("name,x1,x2,y1,y2,classname\na.jpg,1,2,3,4,hat\n")
    with pytest.raises(AnnotationError, match=rf"^{path}: no face rows"):
        read_truth(path)
    path.write_text("name,x1,x2,y1,y2,classname\na.jpg,1,two,3,4,face_with_mask\n")
    with pytest.raises(AnnotationError, match=r"line 2, column 'x2' \(ymin\): 'two' is not a number"):
        read_truth(path)
