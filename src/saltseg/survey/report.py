"""The report's view of a predicted volume: a few slices, each as seismic, the interpreter's
labels and the predicted salt probability with the mask's outline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from saltseg.errors import InputError
from saltseg.report.figure import new_figure, save_figure
from saltseg.sections.io import Section
from saltseg.survey.labels import UNINTERPRETED, open_survey


def pick_slices(interpreted: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` slices: the interpreted slice nearest the middle, then uninterpreted ones
    evenly spaced (the volume's own work), in slice order."""
    slices = np.arange(len(interpreted))
    picks = []
    if interpreted.any():
        done = slices[interpreted]
        picks.append(int(done[np.argmin(np.abs(done - len(slices) // 2))]))
    rest = slices[~interpreted]
    if len(rest) and n > len(picks):
        spots = np.linspace(0, len(rest) - 1, n - len(picks) + 2)[1:-1]
        picks += [int(rest[int(round(i))]) for i in spots]
    return sorted(set(picks))[:n]


def slice_of(array: np.ndarray, section: Section, k: int) -> np.ndarray:
    """Slice ``k`` of an array of ``section.shape`` (an output volume) as an image."""
    image = np.asarray(array[section.index(k)])
    return image.T if section.depth_last else image


def plot_volume_slices(
    seismic: str | Path,
    labels: str | Path,
    volume: str | Path,
    out_png: str | Path,
    axis: str = "inline",
    n: int = 3,
) -> None:
    """Draw ``n`` slices (:func:`pick_slices`) of the volume ``predict-section`` wrote in
    ``volume`` (``probability.npy``, ``mask.npy``) into ``out_png``.

    Raises:
        InputError: the volume's arrays missing or not of the seismic's shape.
    """
    from matplotlib.colors import ListedColormap

    volume = Path(volume)
    with open_survey(seismic, labels, axis, tile=None) as survey:
        arrays = {}
        for name in ("probability", "mask"):
            path = volume / f"{name}.npy"
            if not path.is_file():
                raise InputError(path, "expected predict-section's output, found none")
            arrays[name] = np.load(path, mmap_mode="r")
            if arrays[name].shape != survey.seismic.shape:
                raise InputError(
                    path,
                    f"expected the seismic's shape {survey.seismic.shape}, got"
                    f" {arrays[name].shape}",
                )
        interpreted = np.array(
            [(survey.labels_of(k) != UNINTERPRETED).any() for k in range(survey.n_slices)]
        )
        picks = pick_slices(interpreted, n)
        height, width = survey.seismic.slice_shape
        row_height = float(np.clip(4.0 * height / width, 1.5, 4.0))  # 4 in wide panels
        fig = new_figure(12, 0.6 + len(picks) * row_height)
        axes = fig.subplots(len(picks), 3, squeeze=False)
        marks = ListedColormap(["#d0d0d0", "#202020", "#ffd400"])  # -1, 0, 1
        for row, k in zip(axes, picks):
            prob = slice_of(arrays["probability"], survey.seismic, k)
            mask = slice_of(arrays["mask"], survey.seismic, k)
            row[0].imshow(survey.seismic.image(k), cmap="gray", vmin=0, vmax=255, aspect="auto")
            row[1].imshow(survey.labels_of(k), cmap=marks, vmin=-1.5, vmax=1.5, aspect="auto")
            row[2].imshow(prob, cmap="viridis", vmin=0, vmax=1, aspect="auto")
            if mask.any() and not mask.all():
                row[2].contour(mask, levels=[0.5], colors="red", linewidths=0.8)
            state = "interpreted" if interpreted[k] else "not interpreted"
            row[0].set_ylabel(f"slice {k} ({state})")
            for ax, title in zip(row, ("seismic", "labels (grey: none)", "probability, mask")):
                ax.set_title(title, fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
        save_figure(fig, out_png)
