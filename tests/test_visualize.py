"""The paper's Figure 5 (`keras_mixer.plot_token_mixing`, `keras-mixer visualize`).

The ordering is checked on token-mixing units built from sinusoids whose
frequencies and opposite-phase partners are known by construction; the PNG is
read back pixel by pixel against the weights' signs (tokens) and the stem
filters' own min-max scaling.
"""

import math
import os

import numpy as np
import pytest
from PIL import Image

import keras_mixer
import reference
from helpers import TINY, key_parts, write_checkpoint
from keras_mixer import cli
from keras_mixer.visualize import token_mixing_order

GRID = 8  # an 8 x 8 patch grid: 16 x 16 images, 2 x 2 patches
CONFIG = dict(TINY, patch_size=2, tokens_mlp_dim=16)
# (kx, ky) cycles across the grid of each designed pair: radial frequency
# sqrt(kx^2 + ky^2) / GRID cycles per patch, all different.
WAVES = [(3, 1), (1, 0), (2, 2), (0, 2), (1, 1), (3, 2), (2, 0), (0, 3)]


def designed_units(rng, waves=WAVES, *, lone=None, grid=GRID):
    """A (grid^2, units) kernel: per wave a unit and its negative (other amplitude,
    tiny noise), columns shuffled. Returns (kernel, pairs as frozensets, radius of
    each unit)."""
    y, x = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    columns, radii = [], []
    for kx, ky, *phase in waves:  # (kx, ky) or (kx, ky, phase)
        phase = phase[0] if phase else rng.uniform(0, 2 * np.pi)
        wave = np.cos(2 * np.pi * (kx * x + ky * y) / grid + phase).ravel()
        columns += [wave, -rng.uniform(0.5, 2.0) * wave]
        radii += [math.hypot(kx, ky) / grid] * 2
    if lone is not None:
        kx, ky, phase = lone
        columns.append(np.cos(2 * np.pi * (kx * x + ky * y) / grid + phase).ravel())
        radii.append(math.hypot(kx, ky) / grid)
    kernel = np.stack(columns, axis=1) + 1e-3 * rng.standard_normal((grid * grid, len(columns)))
    perm = rng.permutation(len(columns))  # unit perm[k] of the kernel is designed unit k
    shuffled = np.empty_like(kernel)
    shuffled[:, perm] = kernel
    pairs = {frozenset((int(perm[2 * k]), int(perm[2 * k + 1]))) for k in range(len(waves))}
    unit_radius = np.empty(len(columns))
    unit_radius[perm] = radii
    return shuffled, pairs, unit_radius


def test_units_are_paired_by_opposite_phase_and_sorted_by_frequency(rng):
    kernel, pairs, radius = designed_units(rng)
    order, freqs = token_mixing_order(kernel, (GRID, GRID))
    assert {frozenset(p) for p in order} == pairs
    assert [radius[p[0]] for p in order] == sorted(radius[p[0]] for p in order)
    assert [p[0] < p[1] for p in order] == [True] * len(order)
    np.testing.assert_allclose(freqs, radius, atol=2e-3)


def test_the_most_opposite_unit_wins_over_a_merely_negative_one(rng):
    """A unit 120 degrees out of phase with a pair (cosine -0.5 with one of
    them) must not steal a partner from the exact negative (cosine -1); the odd
    unit out stands alone, placed by its frequency."""
    waves = [(3, 1), (1, 0, 0.0), (2, 2)]
    kernel, pairs, radius = designed_units(rng, waves, lone=(1, 0, 2 * np.pi / 3))
    (lone,) = set(range(kernel.shape[1])) - set().union(*pairs)
    order, _ = token_mixing_order(kernel, (GRID, GRID))
    assert {frozenset(p) for p in order if len(p) == 2} == pairs
    assert [p for p in order if len(p) == 1] == [(lone,)]
    # by frequency: the (1, 0) pair and the lone (1, 0) unit first, (3, 1) last
    assert sorted(round(radius[p[0]] * GRID, 3) for p in order[:2]) == [1.0, 1.0]
    assert radius[order[-1][0]] * GRID == pytest.approx(math.hypot(3, 1))


def _model_with_designed_units(rng, kernel):
    model = keras_mixer.Mixer(CONFIG, input_shape=(16, 16, 3), classes=3)
    block = model.get_layer("MixerBlock_0")
    block.token_mixing.dense_0.kernel.assign(kernel.astype("float32"))
    return model


def _pixel_signs(image, box, grid):
    """The colour at each grid cell's centre of a tile: +1 red, -1 blue, 0 white."""
    left, top, right, bottom = box
    step = (right - left) / grid[1]
    signs = np.zeros(grid, int)
    for r in range(grid[0]):
        for c in range(grid[1]):
            red, _, blue = image.getpixel((int(left + (c + 0.5) * step), int(top + (r + 0.5) * step)))
            signs[r, c] = 0 if abs(red - blue) < 8 else (1 if red > blue else -1)
    return signs


def test_png_tiles_show_each_unit_in_order(rng, tmp_path):
    kernel, pairs, radius = designed_units(rng)
    model = _model_with_designed_units(rng, kernel)
    info = keras_mixer.plot_token_mixing(model, path=tmp_path / "fig.png", blocks=[0],
                                         stem_filters=5)
    image = Image.open(tmp_path / "fig.png").convert("RGB")
    assert image.size == info["size"]
    stem, block = info["panels"]
    assert stem["block"] is None and block["block"] == 0 and len(block["units"]) == 16
    # the drawing order: pairs side by side, increasing designed frequency
    units = block["units"]
    assert {frozenset(units[k:k + 2]) for k in range(0, 16, 2)} == pairs
    assert [radius[u] for u in units] == sorted(radius[u] for u in units)
    for unit, box in zip(units, block["boxes"]):
        assert box[2] - box[0] == box[3] - box[1] >= GRID  # square, upscaled
        pattern = kernel[:, unit].reshape(GRID, GRID)
        expected = np.where(np.abs(pattern) < 0.1 * np.abs(pattern).max(), 0, np.sign(pattern))
        got = _pixel_signs(image, box, (GRID, GRID))
        assert np.all((got == expected) | (expected == 0)), unit
    boxes = stem["boxes"] + block["boxes"]
    assert all(0 <= l < r <= image.size[0] and 0 <= t < b <= image.size[1] for l, t, r, b in boxes)
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    # the stem's filters: each scaled to [0, 255] from its own min and max
    filters = np.asarray(model.get_layer("stem").kernel)
    for index, (left, top, right, bottom) in zip(stem["units"], stem["boxes"]):
        f = filters[..., index]
        want = np.round(255 * (f - f.min()) / (f.max() - f.min()))
        step = (right - left) // f.shape[1]
        got = np.asarray(image)[top:bottom:step, left:right:step]
        np.testing.assert_allclose(got, want, atol=1)
    assert os.listdir(tmp_path) == ["fig.png"]  # written atomically, nothing left beside it


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_fewer_units_take_evenly_spaced_pairs_from_low_to_high(rng, tmp_path):
    kernel, pairs, radius = designed_units(rng)
    model = _model_with_designed_units(rng, kernel)
    info = keras_mixer.plot_token_mixing(model, path=str(tmp_path / "f.png"), blocks=0, units=4,
                                         stem_filters=0)
    (block,) = info["panels"]
    units = block["units"]
    assert len(units) == 4 and len(block["boxes"]) == 4
    got = [round(radius[u] * GRID, 6) for u in units]
    lowest, highest = min(math.hypot(*w) for w in WAVES), max(math.hypot(*w) for w in WAVES)
    assert got == [round(lowest, 6)] * 2 + [round(highest, 6)] * 2
    assert {frozenset(units[:2]), frozenset(units[2:])} <= pairs


def test_arguments_are_checked_before_any_work(tmp_path):
    missing = str(tmp_path / "no.keras")
    with pytest.raises(ValueError, match=key_parts("path", ".png", "'fig.jpg'")):
        keras_mixer.plot_token_mixing(missing, path="fig.jpg")
    with pytest.raises(ValueError, match=key_parts("path", "writable directory", "nowhere")):
        keras_mixer.plot_token_mixing(missing, path=str(tmp_path / "nowhere" / "f.png"))
    with pytest.raises(ValueError, match=key_parts("units", "int >= 1", "got 0")):
        keras_mixer.plot_token_mixing(missing, path=str(tmp_path / "f.png"), units=0)
    with pytest.raises(ValueError, match=key_parts("blocks", "got []")):
        keras_mixer.plot_token_mixing(missing, path=str(tmp_path / "f.png"), blocks=[])
    with pytest.raises(ValueError, match=key_parts("blocks", "each block once", "[1, 1]")):
        keras_mixer.plot_token_mixing(missing, path=str(tmp_path / "f.png"), blocks=[1, 1])
    (tmp_path / "old.png").write_bytes(b"old")
    with pytest.raises(FileExistsError, match=key_parts("path", "old.png", "--overwrite")):
        keras_mixer.plot_token_mixing(missing, path=str(tmp_path / "old.png"))
    with pytest.raises(FileNotFoundError, match=key_parts("model", "no.keras")):
        keras_mixer.plot_token_mixing(missing, path=str(tmp_path / "f.png"))
    model = keras_mixer.Mixer(CONFIG, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=key_parts("blocks", "2 blocks", "[-2, 2)", "[0, 2]")):
        keras_mixer.plot_token_mixing(model, path=str(tmp_path / "f.png"), blocks=[0, 2])
    with pytest.raises(ValueError, match=key_parts("units", "[1, 16]", "got 17")):
        keras_mixer.plot_token_mixing(model, path=str(tmp_path / "f.png"), units=17)
    assert sorted(os.listdir(tmp_path)) == ["old.png"]


def test_a_trained_runs_model_keras_through_library_and_cli(digits_mixer, tmp_path, capsys):
    info = keras_mixer.plot_token_mixing(digits_mixer.path, path=str(tmp_path / "a.png"))
    assert [p["block"] for p in info["panels"]] == [None, 0, 1]  # SMALL has two blocks
    assert [len(p["units"]) for p in info["panels"]] == [32, 16, 16]  # stem: its 32 filters
    out = str(tmp_path / "b.png")
    assert cli.main(["visualize", digits_mixer.path, "-o", out, "--blocks", "-1",
                     "--units", "6", "--stem-filters", "0"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 50
    assert cli.main(["visualize", digits_mixer.path, "-o", out]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["visualize", digits_mixer.path, "-o", out, "--overwrite"]) == 0


def test_a_checkpoint_file_with_a_variant(tmp_path, rng, capsys):
    """The authors' .npz layout: library (custom config) and CLI (S/32 at 224, 7x7 tokens)."""
    params = reference.random_checkpoint(rng, 2, 2, 16, 16, 32, tokens=GRID * GRID, classes=3)
    kernel, _, _ = designed_units(rng)
    params["MixerBlock_1/token_mixing/Dense_0/kernel"] = kernel.astype(np.float32)
    path = write_checkpoint(tmp_path / "c.npz", params)
    info = keras_mixer.plot_token_mixing(CONFIG, weights=path, path=str(tmp_path / "c.png"),
                                         blocks=[1], stem_filters=0)
    image = Image.open(tmp_path / "c.png").convert("RGB")
    (panel,) = info["panels"]
    for unit, box in zip(panel["units"], panel["boxes"]):
        pattern = kernel[:, unit].reshape(GRID, GRID)
        expected = np.where(np.abs(pattern) < 0.1 * np.abs(pattern).max(), 0, np.sign(pattern))
        got = _pixel_signs(image, box, (GRID, GRID))
        assert np.all((got == expected) | (expected == 0)), unit

    s32 = reference.random_checkpoint(rng, 8, 32, 512, 256, 2048, tokens=49, classes=1000)
    npz = write_checkpoint(tmp_path / "s32.npz", s32)
    del s32
    out = str(tmp_path / "s32.png")
    assert cli.main(["visualize", "S/32", "--weights", npz, "-o", out, "--blocks", "0", "7",
                     "--units", "8", "--stem-filters", "4"]) == 0
    assert "stem, block 0, block 7" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG"
    assert cli.main(["visualize", "S/32", "--weights", npz, "-o", str(tmp_path / "x.png"),
                     "--blocks", "8"]) == 2
    assert "blocks: the model has 8 blocks, so expected indices in [-8, 8); got [8]" in \
        capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.png")


def test_cli_refuses_bad_arguments_with_exit_code_2(tmp_path, capsys):
    assert cli.main(["visualize", "S/32", "--weights", "none", "-o", str(tmp_path / "f.jpg")]) == 2
    assert "visualize: error: path: expected a path ending in .png; got" in capsys.readouterr().err
    assert cli.main(["visualize", str(tmp_path / "none.keras"), "-o", str(tmp_path / "f.png")]) == 2
    assert "model: no such file" in capsys.readouterr().err
    assert cli.main(["visualize", "S/32", "--weights", "none", "-o", str(tmp_path / "f.png"),
                     "--units", "-3"]) == 2
    assert "units: expected an int >= 1 or None for all; got -3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["visualize", "S/32"])  # -o is required
    assert exit_.value.code == 2
    assert not [p for p in os.listdir(tmp_path)]
