"""The paper's Figure 5: what the first token-mixing MLPs learned.

    keras_mixer.plot_token_mixing("runs/default/model.keras", path="fig.png")

Each hidden unit of a token-mixing MLP's first Dense layer (kernel: tokens x
tokens_mlp_dim) has one weight per patch of the input grid (14 x 14 for a /16
model at 224), drawn as a small image. As in Tolstikhin et al. (2021), Figure 5,
units are paired by opposite phase and the pairs sorted by spatial frequency;
the stem's patch filters are drawn beside them as RGB images. Drawn with Pillow
only (no plotting library); needs Keras and NumPy like the rest of the core.
"""

import math
import os

import numpy as np

from keras_mixer import files

TILE_PIXELS = 40  # a tile's side is about this many pixels (nearest-neighbour upscaling)
GAP = 2  # pixels between the two units of a pair, and between stem filters
PAIR_GAP = 8  # pixels between pairs
MARGIN = 16  # around and between panels
FONT_SIZE = 14
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
# Diverging map: -1 blue, 0 white, +1 red (matplotlib's "bwr").
NEGATIVE, ZERO, POSITIVE = np.array([0, 0, 255.0]), np.array([255.0, 255, 255]), np.array([255.0, 0, 0])


def plot_token_mixing(model, *, path, weights=None, blocks=None, units=None, stem_filters=64,
                      overwrite=False):
    """Draws the token-mixing units of `blocks` (and the stem's filters) into the PNG `path`.

    model: a Keras Mixer, a `.keras` file, or a variant name ("S/16") built with
        `weights` (as `keras_mixer.load_model` takes them).
    blocks: block indices (negative count from the end); default: the first
        three, as in the paper (every block of a shallower model).
    units: how many hidden units per block; None: all of them. Fewer than all
        takes evenly spaced pairs along the frequency order, so the picture still
        runs from low to high frequency.
    stem_filters: how many stem patch filters to draw (the first ones, by index);
        None: all, 0: no stem panel.
    overwrite: replace an existing `path`.

    How units are ordered (`token_mixing_order`): unit j's weights w_j (one per
    token) are paired greedily by opposite phase: among the unpaired units, the
    two with the most negative cosine similarity w_i.w_j / (|w_i| |w_j|) form a
    pair, repeatedly (an odd unit out stands alone). A unit's frequency is the
    energy-weighted mean radial frequency of its pattern on the patch grid:
    with F = 2-D FFT of w_j reshaped to (rows, cols) (mean included, no window),
    f = sum |F|^2 sqrt(fy^2 + fx^2) / sum |F|^2, fy and fx in cycles per patch
    (numpy.fft.fftfreq). A pair's frequency is the mean of its two units'; pairs
    are drawn in increasing frequency, left to right then top to bottom, the
    lower-indexed unit of each pair first. Each unit is coloured on its own scale:
    blue -max|w_j|, white 0, red +max|w_j|. Stem filters (p x p x 3) are each
    scaled to [0, 255] from their own minimum and maximum.

    Every argument is checked before the model is loaded or anything drawn; the
    PNG is written to a temporary name and renamed. Returns a dict: "path",
    "size" (width, height), and "panels": one per drawn panel with "title",
    "block" (None for the stem), "units" (unit or filter indices, in drawing
    order), "boxes" ((left, top, right, bottom) of each tile, in the same order)
    and, for blocks, "frequencies" of those units.
    """
    from keras_mixer.inference import load_model

    path = os.fspath(path) if isinstance(path, os.PathLike) else path
    files.check_output(path, overwrite=overwrite, suffix=".png", arg="path")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"path: expected a .png in a writable directory; got {path!r} "
                         f"({parent} is not a writable directory)")
    _check_count("units", units)
    _check_count("stem_filters", stem_filters, zero=True)
    if blocks is not None:
        _check_block_list(blocks, depth=None)
    net = load_model(model, weights=weights)
    mixer_blocks, stem = _parts(net)
    depth = len(mixer_blocks)
    picked = list(range(min(3, depth))) if blocks is None else _check_block_list(blocks, depth=depth)
    width = mixer_blocks[0].tokens_mlp_dim
    if units is not None and units > width:
        raise ValueError(f"units: expected an int in [1, {width}] (the token-mixing MLPs' "
                         f"hidden units) or None for all; got {units!r}")
    grid = _grid(net, stem, mixer_blocks[0].num_tokens)

    panels = []
    if stem is not None and stem_filters != 0:
        kernel = _float_kernel(stem, "stem")
        count = kernel.shape[-1] if stem_filters is None else min(stem_filters, kernel.shape[-1])
        tiles = [_rgb(kernel[..., i]) for i in range(count)]
        panels.append(dict(
            title=f"stem: {count} of {kernel.shape[-1]} patch filters "
                  f"({kernel.shape[0]}x{kernel.shape[1]} RGB)",
            block=None, units=list(range(count)), tiles=tiles, paired=False))
    for i in picked:
        kernel = _float_kernel(mixer_blocks[i].token_mixing.dense_0, f"block {i}")
        order, freqs = token_mixing_order(kernel, grid)
        order = _subset(order, units)
        flat = [u for pair in order for u in pair]
        tiles = [_diverging(kernel[:, u].reshape(grid)) for u in flat]
        panels.append(dict(
            title=f"block {i} token mixing: {len(flat)} of {kernel.shape[1]} units",
            block=i, units=flat, frequencies=[float(freqs[u]) for u in flat],
            pairs=[len(p) for p in order], tiles=tiles, paired=True))
    title = (f"{net.name}: token-mixing units on the {grid[0]}x{grid[1]} patch grid, paired by "
             f"opposite phase, sorted by spatial frequency (low to high); "
             f"blue < 0 < red, each unit on its own scale")
    image, boxes = _draw(title, panels)
    with files.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    info = []
    for panel, panel_boxes in zip(panels, boxes):
        entry = {k: panel[k] for k in ("title", "block", "units") if k in panel}
        entry["boxes"] = panel_boxes
        if "frequencies" in panel:
            entry["frequencies"] = panel["frequencies"]
        info.append(entry)
    return {"path": path, "size": image.size, "panels": info}


def token_mixing_order(kernel, grid):
    """(pairs, frequencies) of a token-mixing kernel (tokens, units) on a
    `grid` = (rows, cols) of patches: pairs is a list of 1- or 2-tuples of unit
    indices in increasing pair frequency; frequencies[j] is unit j's energy-weighted
    mean radial frequency in cycles per patch. See `plot_token_mixing`."""
    kernel = np.asarray(kernel, dtype=np.float64)
    rows, cols = grid
    if kernel.ndim != 2 or kernel.shape[0] != rows * cols:
        raise ValueError(f"kernel: expected shape ({rows * cols}, units) for a {rows}x{cols} "
                         f"grid; got {kernel.shape}")
    count = kernel.shape[1]
    power = np.abs(np.fft.fft2(kernel.T.reshape(count, rows, cols))) ** 2
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(rows), np.fft.fftfreq(cols), indexing="ij"))
    energy = power.sum(axis=(1, 2))
    freqs = np.where(energy > 0, (power * radius).sum(axis=(1, 2)) / np.maximum(energy, 1e-300), 0.0)

    norms = np.linalg.norm(kernel, axis=0)
    unit = kernel / np.where(norms > 0, norms, 1.0)
    cosine = unit.T @ unit
    i, j = np.triu_indices(count, k=1)
    paired, pairs = np.zeros(count, bool), []
    for k in np.argsort(cosine[i, j], kind="stable"):  # most opposite first
        a, b = i[k], j[k]
        if not (paired[a] or paired[b]):
            paired[a] = paired[b] = True
            pairs.append((int(a), int(b)))
    pairs += [(int(u),) for u in np.flatnonzero(~paired)]
    pairs.sort(key=lambda p: (float(np.mean(freqs[list(p)])), p[0]))
    return pairs, freqs


# --- helpers ----------------------------------------------------------------


def _check_count(name, value, *, zero=False):
    low = 0 if zero else 1
    if value is not None and not (isinstance(value, (int, np.integer))
                                  and not isinstance(value, bool) and value >= low):
        raise ValueError(f"{name}: expected an int >= {low} or None for all; got {value!r}")


def _check_block_list(blocks, *, depth):
    """Block indices as a list of non-negative ints; depth None checks types only."""
    if isinstance(blocks, (int, np.integer)) and not isinstance(blocks, bool):
        blocks = [blocks]
    if not (isinstance(blocks, (list, tuple)) and blocks and all(
            isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in blocks)):
        raise ValueError(f"blocks: expected a non-empty list of block indices; got {blocks!r}")
    if len(set(blocks)) != len(blocks):
        raise ValueError(f"blocks: expected each block once; got {blocks!r}")
    if depth is None:
        return list(blocks)
    bad = [b for b in blocks if not -depth <= b < depth]
    if bad:
        raise ValueError(f"blocks: the model has {depth} blocks, so expected indices in "
                         f"[{-depth}, {depth}); got {list(blocks)!r}")
    picked = [int(b) % depth for b in blocks]
    if len(set(picked)) != len(picked):
        raise ValueError(f"blocks: expected each block once; got {list(blocks)!r}")
    return picked


def _parts(net):
    import keras

    from keras_mixer.layers import MixerBlock

    layers = list(net._flatten_layers())
    blocks = [l for l in layers if isinstance(l, MixerBlock)]
    stems = [l for l in layers if l.name == "stem" and isinstance(l, keras.layers.Conv2D)]
    return blocks, (stems[0] if stems else None)


def _grid(net, stem, tokens):
    """(rows, cols) of the patch grid: the stem's output, else a square."""
    try:
        rows, cols = stem.output.shape[1:3]
        if rows * cols == tokens:
            return int(rows), int(cols)
    except (AttributeError, ValueError, TypeError):
        pass
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"model: cannot tell the patch grid of {net.name!r} ({tokens} tokens, "
                         f"no stem output shape)")
    return side, side


def _float_kernel(layer, where):
    kernel = layer.kernel
    if "int" in str(kernel.dtype):
        raise ValueError(f"model: the {where} kernel is {kernel.dtype} (a quantized model); "
                         f"plot the float model it was quantized from")
    return np.asarray(kernel, dtype=np.float64)


def _subset(pairs, units):
    """`units` units from evenly spaced pairs along the order (all if None)."""
    if units is None or units >= sum(len(p) for p in pairs):
        return pairs
    picks = np.unique(np.round(np.linspace(0, len(pairs) - 1, -(-units // 2))).astype(int))
    out, left = [], units
    for k in picks:
        pair = pairs[k][:left]
        out.append(pair)
        left -= len(pair)
    return out


def _diverging(pattern):
    """(rows, cols) weights -> (rows, cols, 3) uint8, blue-white-red on the
    pattern's own symmetric scale."""
    scale = np.abs(pattern).max()
    t = pattern / scale if scale > 0 else np.zeros_like(pattern)
    t = t[..., None]
    rgb = np.where(t < 0, ZERO + (-t) * (NEGATIVE - ZERO), ZERO + t * (POSITIVE - ZERO))
    return np.round(rgb).astype(np.uint8)


def _rgb(filt):
    """(p, p, 3) stem filter -> uint8 RGB, scaled from its own min and max."""
    low, high = filt.min(), filt.max()
    t = (filt - low) / (high - low) if high > low else np.full_like(filt, 0.5)
    return np.round(255 * t).astype(np.uint8)


def _draw(title, panels):
    """One PNG-ready image: a title line, then the panels side by side, each a
    caption over a grid of tiles. Returns (PIL image, boxes per panel)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=FONT_SIZE)  # Pillow's built-in scalable font
    except (TypeError, ImportError, OSError):  # without FreeType: the small bitmap font
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text):
        left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    layouts = [_layout(panel) for panel in panels]
    line = text_size("Hg")[1] + 6
    widths = [max(w, text_size(p["title"])[0]) for p, (w, _, _) in zip(panels, layouts)]
    width = max(MARGIN + sum(w + MARGIN for w in widths), 2 * MARGIN + text_size(title)[0])
    height = MARGIN + line + MARGIN + line + max(h for _, h, _ in layouts) + MARGIN
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), title, fill=TEXT, font=font)
    x0, y0 = MARGIN, MARGIN + line + MARGIN
    all_boxes = []
    for panel, (w, h, offsets), panel_width in zip(panels, layouts, widths):
        draw.text((x0, y0), panel["title"], fill=TEXT, font=font)
        boxes = []
        for tile, (dx, dy) in zip(panel["tiles"], offsets):
            scale = _scale(tile.shape)
            big = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
            left, top = x0 + dx, y0 + line + dy
            image.paste(Image.fromarray(big, "RGB"), (left, top))
            boxes.append((left, top, left + big.shape[1], top + big.shape[0]))
        all_boxes.append(boxes)
        x0 += panel_width + MARGIN
    return image, all_boxes


def _scale(shape):
    return max(1, -(-TILE_PIXELS // max(shape[:2])))


def _layout(panel):
    """(width, height, [(dx, dy) of each tile]) of a panel's tile grid: about
    square; pairs stay side by side, PAIR_GAP apart."""
    tiles = panel["tiles"]
    if not tiles:
        return 0, 0, []
    th, tw = (n * _scale(tiles[0].shape) for n in tiles[0].shape[:2])
    if panel["paired"]:
        groups = panel["pairs"]
        per_row = max(1, round(math.sqrt(len(groups) / 2 * th / tw)))
        group_w = 2 * tw + GAP
    else:
        groups = [1] * len(tiles)
        per_row = max(1, math.ceil(math.sqrt(len(tiles))))
        group_w = tw
    gap = PAIR_GAP if panel["paired"] else GAP
    offsets = []
    for g, size in enumerate(groups):
        row, col = divmod(g, per_row)
        for k in range(size):
            offsets.append((col * (group_w + gap) + k * (tw + GAP), row * (th + gap)))
    rows = -(-len(groups) // per_row)
    return per_row * (group_w + gap) - gap, rows * (th + gap) - gap, offsets
