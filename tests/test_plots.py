"""facemask.plots' grid of augmentations (the other figures are tested with the reports, in test_evaluate.py)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from facemask.plots import plot_augmentations


def test_plot_augmentations_draws_a_row_per_augmentation_and_names_the_untouched_draws(tmp_path):
    face = np.random.default_rng(0).integers(0, 256, (12, 10, 3)).astype(np.float32)
    flipped = face[:, ::-1]
    brighter = face + 300.0  # past 255: shown clipped, as the model's pixels would be
    figure = plot_augmentations(face, {"flip": [flipped, face, flipped], "brightness": [brighter, face, face]},
                                path=tmp_path / "augmentations.png")
    assert isinstance(figure, Figure) and (tmp_path / "augmentations.png").is_file()
    assert len(figure.axes) == 2 * 4  # 2 rows, the original and 3 draws each
    rows = [figure.axes[:4], figure.axes[4:]]
    assert [row[0].get_ylabel() for row in rows] == ["flip", "brightness"]
    assert [ax.get_title() for ax in rows[0]] == ["original", "flip", "as is", "flip"]
    assert [ax.get_title() for ax in rows[1]] == ["original", "brightness", "as is", "as is"]
    np.testing.assert_array_equal(rows[0][1].images[0].get_array(), flipped.astype(np.uint8))
    assert (rows[1][1].images[0].get_array() == 255).all()


@pytest.mark.parametrize("variants", [{}, {"flip": []}, {"flip": [np.zeros((4, 4, 3))], "hue": []}])
def test_plot_augmentations_wants_as_many_draws_of_every_augmentation(variants):
    with pytest.raises(ValueError, match="same number"):
        plot_augmentations(np.zeros((4, 4, 3)), variants)
