"""facemask.plots' grid of augmentations (the other figures are tested with the reports, in test_evaluate.py)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from facemask.plots import plot_augmentations


def test_plot_augmentations_shows_the_draws_that_changed_the_face_and_counts_them(tmp_path):
    face = np.random.default_rng(0).integers(0, 256, (12, 10, 3)).astype(np.float32)
    flipped = face[:, ::-1]
    brighter = face + 300.0  # past 255: shown clipped, as the model's pixels would be
    variants = {"flip": [face, flipped, face, flipped], "brightness": [brighter, face, face, face],
                "grayscale": [face, face, face, face]}
    figure = plot_augmentations(face, variants, columns=2, path=tmp_path / "augmentations.png")
    assert isinstance(figure, Figure) and (tmp_path / "augmentations.png").is_file()
    assert len(figure.axes) == 3 * 3  # 3 rows: the original and at most 2 draws each
    rows = [figure.axes[0:3], figure.axes[3:6], figure.axes[6:9]]
    assert [row[0].get_ylabel() for row in rows] == ["flip\n2 of 4 changed", "brightness\n1 of 4 changed",
                                                     "grayscale\n0 of 4 changed"]
    assert [ax.get_title() for ax in rows[0]] == ["original", "draw 2", "draw 4"]
    np.testing.assert_array_equal(rows[0][1].images[0].get_array(), flipped.astype(np.uint8))
    assert [ax.get_title() for ax in rows[1]] == ["original", "draw 1", ""] and not rows[1][2].images
    assert (rows[1][1].images[0].get_array() == 255).all()
    assert [ax.get_title() for ax in rows[2]] == ["original", "as is", "as is"]  # nothing changed: said so


@pytest.mark.parametrize("variants", [{}, {"flip": []}, {"flip": [np.zeros((4, 4, 3))], "hue": []}])
def test_plot_augmentations_wants_a_draw_of_every_augmentation(variants):
    with pytest.raises(ValueError, match="at least one image per augmentation"):
        plot_augmentations(np.zeros((4, 4, 3)), variants)
