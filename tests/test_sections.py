"""Whole-section prediction: tiling and blending, SEG-Y/NumPy/PNG inputs, bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import segyio
import torch
from tiny import TINY_MODEL

from saltseg.data.synthetic import draw_section
from saltseg.errors import InputError
from saltseg.io import MANIFEST
from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime
from saltseg.sections import Stitcher, predict_section
from saltseg.sections.io import open_section
from saltseg.sections.stitch import count_tiles, stitch, window

TINY = {**TINY_MODEL, "pad_to": 128}
CPU = resolve_runtime("cpu", "false", "false")
IEEE = segyio.SegySampleFormat.IEEE_FLOAT_4_BYTE
# segyio's own from_array/from_array2D pass Python lists to its C layer and warn about it
pytestmark = pytest.mark.filterwarnings("ignore:Implicit conversion:RuntimeWarning")


@pytest.fixture(scope="module")
def section():
    return draw_section(np.random.default_rng(0), 3, 4)  # 303 x 404 image, mask


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One tiny U-Net model with two folds, and an ensemble cv.json with a tuned threshold."""
    root = tmp_path_factory.mktemp("models") / "stage1"
    for fold in range(2):
        torch.manual_seed(fold)
        model = build_model("unet", 101, **TINY)
        bundle = {"arch": "unet", "model": TINY, "tile": 101, "snapshots": [model.state_dict()]}
        (root / "tiny" / f"fold{fold}").mkdir(parents=True)
        torch.save(bundle, root / "tiny" / f"fold{fold}" / "model.pt")
    (root / "ensemble").mkdir()
    (root / "ensemble" / "cv.json").write_text(json.dumps({"threshold": 0.42}))
    return root


def amplitudes(image: np.ndarray) -> np.ndarray:
    """A float 'seismic' version of a uint8 section: zero-mean amplitudes."""
    return (image.astype(np.float32) - 128) / 40


@pytest.mark.parametrize("stride", [101, 64, 50, 33])
def test_perfect_model_reproduces_the_section_mask(section, stride):
    image, mask = section
    stitcher = Stitcher(image, 101, stride)
    assert len(stitcher) == count_tiles(image.shape, 101, stride)
    for offsets, tiles in stitcher.batches(batch_size=16):
        assert tiles.shape[1:] == (101, 101) and tiles.dtype == np.uint8
        np.testing.assert_array_equal(tiles, stitcher.cut(image, offsets))
        stitcher.add(offsets, stitcher.cut(mask, offsets).astype(np.float32))
    probs = stitcher.result()
    assert probs.shape == mask.shape and probs.dtype == np.float32
    np.testing.assert_array_equal((probs > 0.5).astype(np.uint8), mask)


def test_blending_weights_sum_and_a_constant_model_gives_the_constant(section):
    image = section[0][:150, :230]
    done = []
    probs = stitch(image, lambda t: np.full(t.shape, 0.37, np.float32), 101, 40, 7, done.append)
    assert sum(done) == count_tiles(image.shape, 101, 40)
    np.testing.assert_allclose(probs, 0.37, atol=1e-6)
    stitcher = Stitcher(image, 101, 40)
    expected = np.zeros(image.shape)
    for y, x in stitcher.offsets:
        ys, xs = np.arange(y, y + 101), np.arange(x, x + 101)
        inside_y, inside_x = (ys >= 0) & (ys < 150), (xs >= 0) & (xs < 230)
        expected[np.ix_(ys[inside_y], xs[inside_x])] += window(101)[np.ix_(inside_y, inside_x)]
    for offsets, tiles in stitcher.batches(64):
        stitcher.add(offsets, np.zeros(tiles.shape, np.float32))
    np.testing.assert_allclose(stitcher.weights(), expected, rtol=1e-5)
    assert stitcher.weights().min() > 0.5  # every pixel near a tile centre


def test_window_is_smooth_symmetric_and_positive():
    w = window(101)
    assert w.min() > 0 and w.max() <= 1 and np.allclose(w, w.T) and np.allclose(w, w[::-1])
    assert w[50, 50] == w.max() and w[0, 0] < 1e-2


def test_small_sections_and_bad_strides(section):
    image, mask = section[0][:40, :30], section[1][:40, :30]
    stitcher = Stitcher(image, 101, 50)
    for offsets, _ in stitcher.batches(4):
        stitcher.add(offsets, stitcher.cut(mask, offsets).astype(np.float32))
    np.testing.assert_array_equal(stitcher.result() > 0.5, mask.astype(bool))
    for stride in (0, 102):
        with pytest.raises(ValueError, match="stride"):
            Stitcher(image, 101, stride)


def test_volumes_read_alike_from_npy_and_segy_in_either_axis(tmp_path):
    cube = np.random.default_rng(1).standard_normal((16, 18, 20)).astype(np.float32)
    np.save(tmp_path / "cube.npy", cube)
    segyio.tools.from_array(str(tmp_path / "cube.sgy"), cube, format=IEEE)
    for axis, n in (("inline", 16), ("crossline", 18)):
        with (
            open_section(tmp_path / "cube.npy", axis) as a,
            open_section(tmp_path / "cube.sgy", axis) as b,
        ):
            assert a.shape == b.shape == cube.shape and a.n_slices == b.n_slices == n
            assert a.scaling == b.scaling
            back = np.zeros(cube.shape, np.uint8)
            for k in range(n):
                np.testing.assert_array_equal(a.image(k), b.image(k))
                a.store(back, k, a.image(k))
            np.testing.assert_array_equal(back, a.scaling.apply(cube))
    lo, hi = np.percentile(cube, [1, 99])
    assert a.scaling.low == pytest.approx(lo) and a.scaling.high == pytest.approx(hi)


def test_crossline_sorted_segy_keeps_its_file_order(tmp_path):
    cube = np.random.default_rng(2).standard_normal((16, 18, 20)).astype(np.float32)
    spec = segyio.spec()
    spec.sorting, spec.format, spec.samples = 1, 5, list(range(20))  # 1: crossline sorting
    spec.ilines, spec.xlines = list(range(1, 17)), list(range(1, 19))
    with segyio.create(str(tmp_path / "x.sgy"), spec) as f:
        for t, (x, i) in enumerate(np.ndindex(18, 16)):
            f.header[t] = {segyio.su.iline: i + 1, segyio.su.xline: x + 1}
            f.trace[t] = cube[i, x]
    np.save(tmp_path / "cube.npy", cube)
    for axis in ("inline", "crossline"):
        with (
            open_section(tmp_path / "x.sgy", axis) as a,
            open_section(tmp_path / "cube.npy", axis) as b,
        ):
            assert a.shape == (18, 16, 20) and a.slice_axis == (1 if axis == "inline" else 0)
            back = np.zeros(a.shape, np.uint8)
            for k in range(a.n_slices):
                np.testing.assert_array_equal(a.image(k), b.image(k))
                a.store(back, k, a.image(k))
            np.testing.assert_array_equal(back, a.scaling.apply(cube.transpose(1, 0, 2)))


def test_png_8_and_16_bit_and_rgb_scale_alike(tmp_path, section):
    image = section[0][:60, :80]
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "b.png"), image.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "c.tif"), np.dstack([image] * 3))
    scaled = [open_section(tmp_path / n).__enter__().image(0) for n in ("a.png", "b.png", "c.tif")]
    assert all(s.shape == (60, 80) and s.dtype == np.uint8 for s in scaled)
    assert np.abs(scaled[0].astype(int) - scaled[1]).max() <= 1
    np.testing.assert_array_equal(scaled[0], scaled[2])


def check_outputs(out, shape, threshold=0.42):
    prob, mask = np.load(out / "probability.npy"), np.load(out / "mask.npy")
    assert prob.shape == mask.shape == shape
    assert prob.dtype == np.float32 and mask.dtype == np.uint8
    assert 0 <= prob.min() and prob.max() <= 1
    np.testing.assert_array_equal(mask, prob > threshold)
    return prob, mask


def test_segy_line_and_npy_section_predict_the_same(tmp_path, models, section):
    image = section[0][:101, :202]
    segyio.tools.from_array2D(str(tmp_path / "line.sgy"), amplitudes(image).T, dt=2000)  # IBM
    with segyio.open(str(tmp_path / "line.sgy"), "r+", ignore_geometry=True) as f:
        for i in range(f.tracecount):
            f.header[i] = {segyio.su.cdp: 1000 + i, segyio.su.sx: 5 * i}
        np.save(tmp_path / "line.npy", f.trace.raw[:].T)  # the same amplitudes, as an image
    info = predict_section(models, tmp_path / "line.sgy", tmp_path / "out_sgy", runtime=CPU)
    assert info["threshold"] == 0.42 and info["threshold_source"].endswith("cv.json")
    assert len(info["models"]) == 2
    assert info["tiles"] == count_tiles((101, 202), 101, 50) and info["tiles_per_s"] > 0
    prob, mask = check_outputs(tmp_path / "out_sgy", (202, 101))
    predict_section(models, tmp_path / "line.npy", tmp_path / "out_npy", runtime=CPU)
    np.testing.assert_allclose(check_outputs(tmp_path / "out_npy", (101, 202))[0], prob.T)
    with (
        segyio.open(str(tmp_path / "line.sgy"), ignore_geometry=True) as src,
        segyio.open(str(tmp_path / "out_sgy" / "probability.sgy"), ignore_geometry=True) as p,
        segyio.open(str(tmp_path / "out_sgy" / "mask.sgy"), ignore_geometry=True) as m,
    ):
        assert p.text[0] == src.text[0] and np.array_equal(p.samples, src.samples)
        assert src.format != p.format and p.bin[segyio.BinField.Format] == 5
        for i in (0, 57, src.tracecount - 1):
            assert dict(p.header[i]) == dict(src.header[i]) == dict(m.header[i])
        np.testing.assert_array_equal(p.trace.raw[:], prob)
        np.testing.assert_array_equal(m.trace.raw[:], mask)
    overlay = cv2.imread(str(tmp_path / "out_sgy" / "overlay.png"))
    assert overlay.shape == (101, 202, 3)


@pytest.mark.slow  # 34 slices x 2 formats x 2 models: 9 minutes on a loaded 2-core machine;
# fast: test_a_small_volume_writes_slice_by_slice_from_segy_and_npy (the same at 32 px)
def test_volume_slice_by_slice_segy_and_npy(tmp_path, models, section):
    cube = np.stack([amplitudes(section[0][:20, 20 * k : 20 * k + 18]).T for k in range(16)])
    np.save(tmp_path / "cube.npy", cube)  # (inlines 16, crosslines 18, depth 20)
    segyio.tools.from_array(str(tmp_path / "cube.sgy"), cube, format=IEEE)
    for axis in ("inline", "crossline"):
        kw = {"stride": 101, "threshold": "fixed", "axis": axis, "runtime": CPU}
        predict_section(models, tmp_path / "cube.sgy", tmp_path / f"sgy_{axis}", **kw)
        predict_section(models, tmp_path / "cube.npy", tmp_path / f"npy_{axis}", **kw)
        prob, _ = check_outputs(tmp_path / f"sgy_{axis}", cube.shape, 0.5)
        np.testing.assert_array_equal(
            check_outputs(tmp_path / f"npy_{axis}", cube.shape, 0.5)[0], prob
        )
        params = json.loads((tmp_path / f"sgy_{axis}" / "params.json").read_text())
        assert params["slices"] == (16 if axis == "inline" else 18) and params["axis"] == axis
    assert not (tmp_path / "sgy_inline" / "overlay.png").exists()
    with (
        segyio.open(str(tmp_path / "cube.sgy")) as src,
        segyio.open(str(tmp_path / "sgy_inline" / "probability.sgy")) as p,
    ):
        assert list(p.ilines) == list(src.ilines) and list(p.xlines) == list(src.xlines)
        assert dict(p.header[40]) == dict(src.header[40])
        np.testing.assert_array_equal(
            segyio.tools.cube(p), np.load(tmp_path / "sgy_inline" / "probability.npy")
        )


@pytest.mark.parametrize("axis, shape", [("inline", (2, 16, 17)), ("crossline", (16, 2, 17))])
def test_a_small_volume_writes_slice_by_slice_from_segy_and_npy(tmp_path, section, axis, shape):
    """The fast version of the volume test above: two slices (the least side is 16 px) along
    ``axis``, one model at 32 px, one torch thread."""
    small = {**TINY_MODEL, "resize_to": 32, "pad_to": 32}
    torch.manual_seed(0)
    snapshot = build_model("unet", 101, **small).state_dict()
    (tmp_path / "stage1/tiny/fold0").mkdir(parents=True)
    bundle = {"arch": "unet", "model": small, "tile": 101, "snapshots": [snapshot]}
    torch.save(bundle, tmp_path / "stage1/tiny/fold0/model.pt")
    inlines, crosslines, depth = shape
    cube = np.stack(
        [amplitudes(section[0][:depth, 20 * k : 20 * k + crosslines]).T for k in range(inlines)]
    )
    np.save(tmp_path / "cube.npy", cube)
    segyio.tools.from_array(str(tmp_path / "cube.sgy"), cube, format=IEEE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32 px net: two threads only wait on each other
    try:
        kw = {"stride": 101, "threshold": "fixed", "axis": axis, "runtime": CPU}
        for form in ("sgy", "npy"):
            predict_section(tmp_path / "stage1", tmp_path / f"cube.{form}", tmp_path / form, **kw)
    finally:
        torch.set_num_threads(threads)
    prob, mask = check_outputs(tmp_path / "sgy", cube.shape, 0.5)
    np.testing.assert_array_equal(check_outputs(tmp_path / "npy", cube.shape, 0.5)[0], prob)
    params = json.loads((tmp_path / "sgy" / "params.json").read_text())
    assert params["slices"] == 2 and params["axis"] == axis
    with (
        segyio.open(str(tmp_path / "cube.sgy")) as src,
        segyio.open(str(tmp_path / "sgy" / "probability.sgy")) as p,
        segyio.open(str(tmp_path / "sgy" / "mask.sgy")) as m,
    ):
        assert list(p.ilines) == list(src.ilines) and list(p.xlines) == list(src.xlines)
        assert dict(p.header[-1]) == dict(src.header[-1]) == dict(m.header[-1])
        np.testing.assert_array_equal(segyio.tools.cube(p), prob)
        np.testing.assert_array_equal(segyio.tools.cube(m), mask)


def test_png_input_writes_an_overlay(tmp_path, models, section):
    cv2.imwrite(str(tmp_path / "section.png"), section[0][:101, :150])
    one = models / "tiny" / "fold1" / "model.pt"
    info = predict_section(
        models,
        tmp_path / "section.png",
        tmp_path / "out",
        101,
        threshold=0.5,
        runtime=CPU,
        model_files=[one],
    )
    assert info["threshold_source"] == "given" and info["models"] == [str(one)]
    check_outputs(tmp_path / "out", (101, 150), 0.5)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        MANIFEST,
        "mask.npy",
        "overlay.png",
        "params.json",
        "probability.npy",
    ]


def bad_inputs(tmp_path):
    (tmp_path / "corrupt.sgy").write_bytes(np.random.default_rng(0).bytes(5000))
    segyio.tools.from_array2D(str(tmp_path / "whole.sgy"), np.ones((40, 30), np.float32))
    (tmp_path / "truncated.sgy").write_bytes((tmp_path / "whole.sgy").read_bytes()[:-100])
    np.save(tmp_path / "line1d.npy", np.arange(500.0))
    np.save(tmp_path / "four_d.npy", np.zeros((2, 20, 20, 20)))
    np.save(tmp_path / "nan.npy", np.full((50, 50), np.nan))
    np.save(tmp_path / "constant.npy", np.full((50, 50), 3.0))
    np.save(tmp_path / "tiny.npy", np.random.default_rng(0).random((8, 50)))
    (tmp_path / "notes.txt").write_text("hello")
    return {
        "corrupt.sgy": "readable SEG-Y",
        "truncated.sgy": "readable SEG-Y",
        "line1d.npy": "2-D section or a 3-D volume",
        "four_d.npy": "2-D section or a 3-D volume",
        "nan.npy": "finite amplitudes",
        "constant.npy": "constant",
        "tiny.npy": "at least 16 pixels",
        "notes.txt": ".sgy/.segy, .npy",
        "missing.npy": "existing input file",
    }


def test_bad_input_stops_with_one_line_and_writes_nothing(tmp_path, models, section):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, expected in bad_inputs(inputs).items():
        with pytest.raises(InputError, match=expected) as err:
            predict_section(models, inputs / name, tmp_path / "results" / "out", runtime=CPU)
        assert "\n" not in str(err.value) and name in str(err.value)
    np.save(inputs / "good.npy", amplitudes(section[0][:50, :50]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="expected trained models"):
        predict_section(tmp_path / "empty", inputs / "good.npy", tmp_path / "results" / "out")
    with pytest.raises(InputError, match="expected a trained model.pt"):
        predict_section(
            models, inputs / "good.npy", tmp_path / "results" / "out", model_files=[inputs / "x.pt"]
        )
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_threshold_resolution_names_the_option_and_warns_on_fallback(tmp_path, capsys):
    from saltseg.sections.predict import resolve_threshold

    with pytest.raises(InputError, match=r"--threshold: expected .* got 'abc'"):
        resolve_threshold("abc", tmp_path)
    assert resolve_threshold("tuned", tmp_path) == (
        0.5,
        "fixed (no cv.json under the models directory)",
    )
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("saltseg predict-section: warning:") and "\n" not in warning
    (tmp_path / "cv.json").write_text(json.dumps({"threshold": 0.7, "threshold_pixels": 0.45}))
    assert resolve_threshold("tuned", tmp_path) == (0.45, str(tmp_path / "cv.json"))


def test_the_fallback_warning_names_the_snakemake_target_that_tunes_it(tmp_path, capsys):
    """After `snakemake submission` a stage has no ensemble/cv.json: the warning says how to
    make the one the folder would use (docs/sections.md)."""
    from saltseg.sections.predict import resolve_threshold

    stage, blend = tmp_path / "results" / "stage1", tmp_path / "results" / "blend"
    (stage / "m" / "fold0").mkdir(parents=True)
    (stage / "m" / "fold0" / "model.pt").touch()
    blend.mkdir()
    (blend / "members.json").write_text("{}")
    for folder, target in [
        (stage, stage / "ensemble" / "cv.json"),
        (stage / "m", stage / "m" / "cv.json"),
        (blend, blend / "cv.json"),
    ]:
        assert resolve_threshold("tuned", folder)[0] == 0.5
        warning = capsys.readouterr().err.strip()
        assert f"{folder}: no cv.json" in warning and f"`snakemake {target}` tunes it" in warning


def test_a_blend_folder_uses_its_members_weights_and_threshold(tmp_path, models):
    """``--models results/blend``: the members of members.json, weighted, with the blend's cut."""
    other = models.parent / "stage2" / "other"
    (other / "fold0").mkdir(parents=True)
    torch.manual_seed(7)
    model = build_model("unet", 101, **TINY)
    bundle = {"arch": "unet", "model": TINY, "tile": 101, "snapshots": [model.state_dict()]}
    torch.save(bundle, other / "fold0" / "model.pt")
    blend = models.parent / "blend"
    blend.mkdir()
    members = [{"models": str(models / "tiny"), "weight": 3.0}, {"models": str(other), "weight": 1}]
    (blend / "members.json").write_text(json.dumps({"members": members}))
    (blend / "cv.json").write_text(json.dumps({"threshold": 0.6, "threshold_pixels": 0.55}))
    image = (np.random.default_rng(1).random((101, 101)) * 255).astype(np.uint8)
    np.save(tmp_path / "tile.npy", image.astype(np.float32))

    def predict(out, **kw):
        predict_section(kw.pop("root", blend), tmp_path / "tile.npy", tmp_path / out, 101, **kw)
        return np.load(tmp_path / out / "probability.npy"), tmp_path / out / "params.json"

    mixed, params = predict("blend", runtime=CPU)
    tiny, _ = predict("tiny", root=models, runtime=CPU, threshold="fixed")
    alone, _ = predict("other", runtime=CPU, model_files=[other / "fold0" / "model.pt"])
    np.testing.assert_allclose(mixed, 0.75 * tiny + 0.25 * alone, atol=1e-5)
    info = json.loads(params.read_text())
    assert info["threshold"] == 0.55 and info["threshold_source"] == str(blend / "cv.json")
    assert len(info["models"]) == 3  # two folds of tiny, one of other

    given, params = predict("given_cv", root=models, runtime=CPU, cv=blend / "cv.json")
    assert json.loads(params.read_text())["threshold"] == 0.55
    with pytest.raises(InputError, match="missing.json: expected a cv.json"):
        predict("no_cv", runtime=CPU, cv=tmp_path / "missing.json")
    (blend / "members.json").write_text(json.dumps({"members": [{"models": str(other / "x")}]}))
    with pytest.raises(InputError, match="members.json: expected members with models and weight"):
        predict("bad", runtime=CPU)


def test_a_nan_band_is_no_data_in_the_outputs(tmp_path, models, section, capsys):
    """NaN amplitudes: NaN probability, mask 0, counted in params.json and warned about."""
    amp = amplitudes(section[0][:101, :202])
    amp[40:50, :] = np.nan  # a dead band of 10 rows
    np.save(tmp_path / "band.npy", amp)
    info = predict_section(models, tmp_path / "band.npy", tmp_path / "out", runtime=CPU)
    prob, mask = (
        np.load(tmp_path / "out" / "probability.npy"),
        np.load(tmp_path / "out" / "mask.npy"),
    )
    assert np.isnan(prob[40:50]).all() and not np.isnan(np.delete(prob, range(40, 50), 0)).any()
    assert (mask[40:50] == 0).all()
    assert info["nodata_pixels"] == 10 * 202
    assert json.loads((tmp_path / "out" / "params.json").read_text())["nodata_pixels"] == 2020
    err = capsys.readouterr().err.strip().splitlines()
    assert any("2020 pixels hold no data" in line for line in err)
