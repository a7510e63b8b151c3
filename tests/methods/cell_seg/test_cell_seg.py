"""cell-seg: the star-convex contour and its windowed rendering, and the command end to end on both
layouts (a CTC sequence folder, a single image), with its bad-input cases."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from helpers import CELL_FAST, assert_one_line_error
from invrender.cli import main
from invrender.config import compose_config
from invrender.core.figures import LOSS_SIZE, OVERLAY_SIZE
from invrender.core.geometry.polygons import shoelace_area, star_polygon
from invrender.core.metrics import seg_measure
from invrender.core.render.filters import gaussian_blur
from invrender.core.render.polygon2d import render_polygons
from invrender.methods.cell_seg.ctc import read_label_frames, read_tracks
from invrender.methods.cell_seg.fit import split_at_valley, two_means
from invrender.methods.cell_seg.model import Cells, CellScene, linear_upsampling
from invrender.methods.cell_seg.psf import two_gaussian_blur
from invrender.methods.cell_seg.synth import write_cell_dataset
from invrender.methods.cell_seg.windows import paste_windows, render_in_windows, windows_to_labels


def test_a_star_convex_contour_renders_to_its_own_area():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[20.3, 18.7], [41.6, 30.2]], dtype=torch.float64)
    radii = 6.0 + 3.0 * torch.rand(2, 32, generator=generator, dtype=torch.float64)
    polygons = star_polygon(centres, radii)
    masks = render_polygons(polygons, 56, 64)
    torch.testing.assert_close(masks.sum((1, 2)), shoelace_area(polygons).abs(), rtol=1e-9, atol=1e-9)
    # The area of a star polygon with radii r_j at angles 2 pi j / R.
    expected = 0.5 * np.sin(2 * np.pi / 32) * (radii * torch.roll(radii, -1, dims=1)).sum(1)
    torch.testing.assert_close(masks.sum((1, 2)), expected, rtol=1e-9, atol=1e-9)


def test_windows_paste_to_the_full_render_with_its_gradient():
    centres = torch.tensor(
        [[10.2, 12.5], [30.7, 25.1], [2.0, 44.0], [24.0, 10.0]], dtype=torch.float64, requires_grad=True
    )  # the third one cut by the border
    radii = torch.tensor([5.5, 5.5, 5.5, 2.5], dtype=torch.float64)[:, None].expand(4, 16)  # the last one small
    weights = torch.rand(40, 48, dtype=torch.float64)
    brightness = torch.tensor([1.0, 0.5, 2.0, 3.0], dtype=torch.float64)
    full = (render_polygons(star_polygon(centres, radii), 40, 48) * brightness[:, None, None]).sum(0)
    (grad_full,) = torch.autograd.grad((full * weights).sum(), centres)
    windows = render_in_windows(render_polygons, star_polygon(centres, radii))
    assert windows[0].index.tolist() == [3]  # the small cell, cheapest, in a window of its own size
    assert sorted(torch.cat([group.index for group in windows]).tolist()) == [0, 1, 2, 3]
    pasted = paste_windows(windows, 40, 48, brightness)
    (grad_pasted,) = torch.autograd.grad((pasted * weights).sum(), centres)
    torch.testing.assert_close(pasted, full)
    torch.testing.assert_close(grad_pasted, grad_full)
    labels = windows_to_labels([group.detach() for group in windows], torch.tensor([5, 6, 7, 8]), 40, 48)
    assert set(np.unique(labels.numpy())) == {0, 5, 6, 7, 8}
    assert ((labels == 5).sum() - np.pi * 5.5**2).abs() < 12


# Widths whose padded FFT length (next_fast_len(width + 2 * 15)) is even (72) and odd (45): the
# gradient of the half spectrum counts its last column once or twice.
@pytest.mark.parametrize("width", [37, 15])
def test_the_two_gaussian_psf_by_fft_is_the_two_separable_blurs(width):
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(53, width, generator=generator, dtype=torch.float64, requires_grad=True)
    psf = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (1.3, 4.7, 0.3)]
    sigma, halo_sigma, halo_weight = psf
    weights = torch.rand(53, width, generator=generator, dtype=torch.float64)
    direct = (1 - halo_weight) * gaussian_blur(image, sigma) + halo_weight * gaussian_blur(image, halo_sigma)
    by_fft = two_gaussian_blur(image, sigma, halo_sigma, halo_weight)
    torch.testing.assert_close(by_fft, direct, rtol=0, atol=1e-12)
    for got, expected in zip(
        torch.autograd.grad((by_fft * weights).sum(), [image, *psf]),
        torch.autograd.grad((direct * weights).sum(), [image, *psf]),
    ):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("size, knots", [(512, 4), (37, 5), (9, 1), (1, 3)])
def test_the_background_upsampling_is_torchs_bilinear_with_aligned_corners(size, knots):
    grid = torch.rand(knots, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.nn.functional.interpolate(grid[None, None], size=(size, 7), mode="bilinear", align_corners=True)
    upsampled = linear_upsampling(size, knots) @ grid @ linear_upsampling(7, 3).T
    torch.testing.assert_close(upsampled, expected[0, 0], rtol=0, atol=1e-14)


def test_a_scene_with_contours_not_trained_renders_them_again_once_they_change():
    centres = np.array([[12.0, 10.0], [26.0, 20.0]])
    cells = Cells(np.array([1, 2]), centres, np.full((2, 16), 5.0), np.ones(2), np.zeros((2, 2)), 1.5, 8.0, 0.2)
    scene = CellScene(cells, (32, 40), render_polygons, 3, 25.0)
    scene.requires_grad_(False)  # as in a phase that trains the appearance only: the windows are kept
    first = scene()["render"]
    torch.testing.assert_close(scene()["render"], first)
    with torch.no_grad():
        scene.centres += 0.5
    moved = CellScene(replace(cells, centres=cells.centres + 0.5), (32, 40), render_polygons, 3, 25.0)
    torch.testing.assert_close(scene()["render"], moved()["render"].detach())
    assert not torch.allclose(scene()["render"], first)


def test_two_means_separates_two_blobs_of_points():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal([10, 10], 2, (50, 2)), rng.normal([30, 12], 2, (70, 2))])
    halves = two_means(points)
    assert len(set(halves[:50])) == 1 and len(set(halves[50:])) == 1 and halves[0] != halves[-1]


def _one_cell_over(discs: list[tuple[float, float, float, float]]) -> tuple[np.ndarray, np.ndarray, Cells]:
    """A frame of discs (x, y, radius, brightness) over a dark background; the label image of one
    cell (label 1) covering all of them, plus four single cells of radius 8 along the bottom (so
    that one cell over two discs of radius 7 is 1.5 times the median area: a candidate, below
    max_area_ratio); and those cells."""
    height, width = 64, 128
    ys, xs = np.mgrid[:height, :width]
    image = np.full((height, width), 0.05)
    labels = np.zeros((height, width), dtype=np.int64)
    for x, y, r, b in discs:
        disc = (xs - x) ** 2 + (ys - y) ** 2 <= r**2
        image[disc], labels[disc] = b, 1
    for i in range(4):
        disc = (xs - (12 + 30 * i)) ** 2 + (ys - 54) ** 2 <= 8**2
        image[disc], labels[disc] = 0.5, i + 2
    cells = Cells(np.arange(1, 6), np.zeros((5, 2)), np.full((5, 8), 7.0), np.ones(5), np.zeros((2, 2)), 1.5, 8.0, 0.2)
    return image, labels, cells


def _split(image, labels, cells):
    cfg = compose_config("cell_seg", "default", [])
    return split_at_valley(cells, labels, image, cfg, lambda n: np.arange(100, 100 + n))


def test_a_cell_over_two_touching_nuclei_of_different_brightness_is_split():
    image, labels, cells = _one_cell_over([(40, 22, 7, 0.9), (53, 22, 7, 0.4)])
    revised, splits = _split(image, labels, cells)
    assert splits == {1: (100, 101)} and len(revised) == len(cells) + 1
    parts = revised.subset(np.isin(revised.labels, [100, 101]))
    assert sorted(parts.centres[:, 0]) == pytest.approx([40, 53], abs=2)


def test_a_cell_over_two_nuclei_with_a_dark_line_between_is_split():
    image, labels, cells = _one_cell_over([(40, 22, 7, 0.6), (53, 22, 7, 0.6)])
    image[:, 46:48] = np.where(labels[:, 46:48] == 1, 0.4, image[:, 46:48])  # the dimmer boundary between them
    _, splits = _split(image, labels, cells)
    assert list(splits) == [1]


def test_one_uniform_nucleus_is_not_split():
    image, labels, cells = _one_cell_over(
        [(40, 22, 7, 0.6), (46, 22, 7, 0.6), (52, 22, 7, 0.6)]
    )  # one elongated nucleus
    revised, splits = _split(image, labels, cells)
    assert splits == {} and len(revised) == len(cells)


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    out = tmp_path_factory.mktemp("movie")
    summary = write_cell_dataset(out, frames=4, size=96, cells=4, divisions=1, seed=1)
    return out, summary


def test_a_sequence_gives_ctc_masks_and_tracks(movie, tmp_path):
    data, _ = movie
    out = tmp_path / "01_RES"
    assert main(["cell-seg", str(data / "01"), "--out", str(out), "-q", *CELL_FAST]) == 0
    masks = read_label_frames(out, "mask")
    assert sorted(masks) == [0, 1, 2, 3]
    tracks = read_tracks(out / "res_track.txt")
    for time, mask in masks.items():  # every label in a frame is a track alive then
        alive = {label for label, begin, end, _ in tracks if begin <= time <= end}
        assert set(np.unique(mask)) - {0} <= alive
    measure = seg_measure(masks, read_label_frames(data / "01_GT" / "SEG", "man_seg"))
    assert measure["seg"] > 0.7, measure
    record = json.loads((out / "01.cells.json").read_text())
    assert len(record["frames"]) == 4 and all(f["cells"] for f in record["frames"])
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [f"t{t:03d}.png" for t in range(4)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["status"] == "done"
    for name, size in (("overlays/t000.png", OVERLAY_SIZE), ("tracks.png", OVERLAY_SIZE), ("01.loss.png", LOSS_SIZE)):
        with Image.open(out / name) as figure:
            assert figure.format == "PNG" and figure.size == size
    # Resume: the finished sequence is skipped.
    assert main(["cell-seg", str(data / "01"), "--out", str(out), "-q", "--resume", *CELL_FAST]) == 0
    assert json.loads((out / "manifest.json").read_text())["inputs"][0]["status"] == "skipped"


def test_tracks_use_frame_numbers_of_a_sequence_that_starts_later(movie, tmp_path):
    """`res_track.txt` gives frames by their numbers (t005 is frame 5), not by their position."""
    data, _ = movie
    later = tmp_path / "02"
    later.mkdir()
    for t in (2, 3):
        (later / f"t{t + 3:03d}.tif").write_bytes((data / "01" / f"t{t:03d}.tif").read_bytes())
    out = tmp_path / "02_RES"
    assert main(["cell-seg", str(later), "--out", str(out), "-q", *CELL_FAST]) == 0
    masks = read_label_frames(out, "mask")
    assert sorted(masks) == [5, 6]
    tracks = read_tracks(out / "res_track.txt")
    assert tracks and all(5 <= begin <= end <= 6 for _, begin, end, _ in tracks)
    for time, mask in masks.items():
        alive = {label for label, begin, end, _ in tracks if begin <= time <= end}
        assert set(np.unique(mask)) - {0} <= alive


def test_a_single_image_gives_a_label_image(movie, tmp_path):
    data, _ = movie
    image = tmp_path / "frame.tif"
    image.write_bytes((data / "01" / "t002.tif").read_bytes())
    out = tmp_path / "out"
    assert main(["cell-seg", str(image), "--out", str(out), "-q", *CELL_FAST]) == 0
    labels = tifffile.imread(out / "frame.labels.tif")
    assert labels.dtype == np.uint16
    truth = tifffile.imread(data / "01_GT" / "SEG" / "man_seg002.tif")
    assert seg_measure({0: labels}, {0: truth})["seg"] > 0.7
    assert (out / "frame.overlay.png").is_file() and (out / "frame.cells.json").is_file()
    with Image.open(out / "frame.loss.png") as loss:
        assert loss.format == "PNG" and loss.size == LOSS_SIZE


def test_an_empty_folder(tmp_path, capsys):
    folder = tmp_path / "01"
    folder.mkdir()
    out = tmp_path / "out"
    code = main(["cell-seg", str(folder), "--out", str(out), "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, str(folder), "no frames")


def test_frames_of_different_sizes(tmp_path, capsys):
    folder = tmp_path / "01"
    folder.mkdir()
    tifffile.imwrite(folder / "t000.tif", np.ones((32, 32), np.uint16))
    tifffile.imwrite(folder / "t001.tif", np.ones((32, 40), np.uint16))
    out = tmp_path / "out"
    code = main(["cell-seg", str(folder), "--out", str(out), "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, "t001.tif")


def test_a_3d_frame_where_2d_is_expected(tmp_path, capsys):
    folder = tmp_path / "01"
    folder.mkdir()
    tifffile.imwrite(folder / "t000.tif", np.ones((32, 32), np.uint16))
    tifffile.imwrite(folder / "t001.tif", np.ones((3, 32, 32), np.uint16), photometric="minisblack")
    out = tmp_path / "out"
    code = main(["cell-seg", str(folder), "--out", str(out), "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, "t001.tif", "3D")


def test_two_time_lapses_into_one_out_folder(movie, tmp_path, capsys):
    data, _ = movie
    out = tmp_path / "out"
    code = main(["cell-seg", str(data / "01"), str(data / "01" / "t000.tif"), "--out", str(out), "-q"])
    assert_one_line_error(code, capsys.readouterr().err, out, "one time-lapse per --out")


def test_an_unknown_seed_threshold_is_refused_in_one_line(movie, tmp_path, capsys):
    data, _ = movie
    out = tmp_path / "out"
    code = main(["cell-seg", str(data / "01"), "--out", str(out), "--device", "cpu", "-q", "seeds.threshold=median"])
    assert_one_line_error(code, capsys.readouterr().err, out, "seeds.threshold")
