"""Images as users and attackers send them: every bit depth and mode Pillow reads
maps to RGB 0-255 as TensorFlow's decoder (the SavedModel's) maps it, EXIF
orientation is applied, and shapes that would blow up the resize (too many
pixels, extreme aspect ratios) are refused from the header, by `load_image` and
by the SavedModel's `serve_bytes`, with bounded memory."""

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import key_parts
from PIL import Image

from keras_mixer.preprocessing import MAX_ASPECT_RATIO, EvalTransform, load_image


def _identity(height, width):
    """A transform that keeps every pixel: resize to the same size, crop all."""
    return EvalTransform((height, width), crop_fraction=1.0, interpolation="bilinear")


def _tf_decode(data):
    """The SavedModel's decode path."""
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def _pil_bytes(img, fmt="PNG", **kwargs):
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _modes(rng):
    """name -> encoded bytes, one per mode Pillow reads back (PA cannot be written)."""
    a16 = rng.integers(0, 65536, (6, 10), dtype=np.uint16)
    a8 = rng.integers(0, 256, (6, 10, 4), dtype=np.uint8)
    palette = Image.fromarray(a8[..., :3]).quantize(16)
    palette.info["transparency"] = 3
    return {
        "I;16": _pil_bytes(Image.fromarray(a16)),
        "I;16B": _pil_bytes(Image.frombytes("I;16B", (10, 6), a16.astype(">u2").tobytes())),
        "RGB 16-bit": tf.io.encode_png(rng.integers(0, 65536, (6, 10, 3), dtype=np.uint16)).numpy(),
        "RGBA 16-bit": tf.io.encode_png(rng.integers(0, 65536, (6, 10, 4), dtype=np.uint16)).numpy(),
        "LA 16-bit": tf.io.encode_png(rng.integers(0, 65536, (6, 10, 2), dtype=np.uint16)).numpy(),
        "L": _pil_bytes(Image.fromarray(a8[..., 0])),
        "1": _pil_bytes(Image.fromarray(a8[..., 0] > 127)),
        "P with transparency": _pil_bytes(palette, transparency=3),
        "LA": _pil_bytes(Image.fromarray(a8[..., :2], "LA")),
        "RGBA": _pil_bytes(Image.fromarray(a8, "RGBA")),
        "RGB": _pil_bytes(Image.fromarray(a8[..., :3])),
        # Flat 8x8 blocks: on noise, Pillow's and TensorFlow's IDCTs differ by more.
        "CMYK JPEG": _pil_bytes(Image.fromarray(np.kron(a8[:2, :3], np.ones((8, 8, 1), np.uint8)),
                                                "CMYK"), "JPEG", quality=100),
    }


def test_every_mode_loads_as_tensorflow_decodes_it(tmp_path, rng):
    for name, data in _modes(rng).items():
        path = tmp_path / "image"
        path.write_bytes(data)
        expected = _tf_decode(data).astype(np.float32)
        got = load_image(str(path), _identity(*expected.shape[:2]))
        # Within one level: 16-bit samples are >> 8 in both (libpng's strip).
        assert np.abs(got - expected).max() <= 1, (name, Image.open(path).mode)
        assert np.ptp(expected) > 0, name  # not a blank image, which would prove nothing


def test_int_and_float_tiffs_which_tensorflow_cannot_decode(tmp_path, rng):
    # Mode I (32-bit ints) is read as 16-bit data (0-65535, >> 8), clipped outside.
    values = rng.integers(0, 65536, (6, 10)).astype(np.int32)
    values[0, :2] = (-5, 70000)
    path = tmp_path / "i.tif"
    Image.fromarray(values, "I").save(path)
    got = load_image(str(path), _identity(6, 10))
    expected = np.clip(values, 0, 65535) >> 8
    np.testing.assert_array_equal(got, np.repeat(expected[..., None], 3, -1).astype(np.float32))
    # Floats have no standard scale: refused with what to do.
    path = tmp_path / "f.tif"
    Image.fromarray(values.astype(np.float32), "F").save(path)
    with pytest.raises(ValueError, match=key_parts("path:", repr(str(path)), "mode 'F'",
                                                   "expected", "8- or 16-bit", "convert")):
        load_image(str(path), _identity(6, 10))


# EXIF Orientation -> what turns the stored pixels upright (ImageOps.exif_transpose).
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # the phone was held turned: rotate 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _photo(path, orientation):
    """A JPEG of 8x8 blocks of distinct colours (JPEG keeps them, every turn
    differs) tagged with EXIF `orientation`; returns its stored pixels."""
    blocks = np.arange(12).reshape(3, 4, 1) * np.array([7, 23, 41]) % 256
    stored = np.kron(blocks, np.ones((8, 8, 1))).astype(np.uint8)  # 24 x 32
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif.tobytes())
    return stored


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = _photo(tmp_path / "photo.jpg", orientation)
    upright = UPRIGHT[orientation](stored).astype(np.float32)
    got = load_image(str(tmp_path / "photo.jpg"), _identity(*upright.shape[:2]))
    assert np.abs(got - upright).mean() < 4, orientation  # JPEG loss only


@pytest.mark.parametrize("big_endian", [False, True])
def test_serve_bytes_turns_jpegs_upright_in_the_graph(tmp_path, big_endian):
    from keras_mixer.export.saved_model import _exif_orientation, _upright

    for orientation in sorted(UPRIGHT):
        stored = _photo(tmp_path / "photo.jpg", orientation)
        data = (tmp_path / "photo.jpg").read_bytes()
        if big_endian:  # as Pillow writes it, in the other byte order (cameras use both)
            exif = Image.open(tmp_path / "photo.jpg").getexif()
            exif.endian = ">"
            Image.fromarray(stored).save(tmp_path / "be.jpg", "JPEG", quality=95, exif=exif.tobytes())
            data = (tmp_path / "be.jpg").read_bytes()
            assert b"Exif\0\0MM" in data
        orientation_read = _exif_orientation(tf.constant(data))
        got = _upright(tf.io.decode_image(data, channels=3, expand_animations=False),
                       orientation_read).numpy()
        np.testing.assert_array_equal(got, UPRIGHT[orientation](_tf_decode(data)))
        assert np.abs(got - UPRIGHT[orientation](stored).astype(int)).mean() < 4  # JPEG loss
    # Other formats and JPEGs without EXIF are left as they are.
    for data in (_pil_bytes(Image.new("RGB", (3, 2))), _pil_bytes(Image.new("RGB", (3, 2)), "JPEG"),
                 b"\xff\xd8\xffExif\0\0MM\0*\xff\xff\xff\xff"):  # an IFD past the end
        assert int(_exif_orientation(tf.constant(data))) == 1


# Runs in a fresh interpreter: loads each image under an address-space limit
# (so a regression fails with MemoryError instead of taking the machine), and
# prints the peak RSS growth in MB and each outcome as JSON.
MEASURE = """
import json, resource, sys
from keras_mixer.preprocessing import load_image
load_image(sys.argv[1], 16)  # imports Keras and warms the resize once
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) for l in f if l.startswith("VmSize")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {}
for path in sys.argv[2:]:
    try:
        out[path] = str(load_image(path, 224).shape)
    except (ValueError, MemoryError) as err:
        out[path] = type(err).__name__ + ": " + str(err)
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"growth_mb": growth, "out": out}))
"""


def _strip(tmp_path, name, width, height):
    path = str(tmp_path / name)
    Image.new("L", (width, height), 128).save(path)
    return path


def test_load_image_refuses_extreme_aspect_ratios_with_bounded_memory(tmp_path):
    normal = _strip(tmp_path, "normal.png", 40, 30)
    panorama = _strip(tmp_path, "panorama.png", 20 * MAX_ASPECT_RATIO, 20)  # the limit passes
    thin = _strip(tmp_path, "thin.png", 1, 4000)  # 93 bytes; was +2 GB
    long = _strip(tmp_path, "long.png", 1_000_000, 1)  # 3 KB; was > 6 GB
    assert max(len(open(p, "rb").read()) for p in (thin, long)) < 4000
    run = subprocess.run([sys.executable, "-c", MEASURE, normal, panorama, thin, long],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    out = result["out"]
    assert out[panorama] == "(224, 224, 3)"
    for path, size in ((thin, "1x4000"), (long, "1000000x1")):
        assert out[path].startswith("ValueError"), out[path]
        assert re.search(key_parts("path:", repr(path), size, "aspect ratio",
                                   f"MAX_ASPECT_RATIO={MAX_ASPECT_RATIO}"), out[path])
    assert result["growth_mb"] < 200, result


# Loads the SavedModel in a fresh interpreter, sends hostile requests one by one
# under an address-space limit, then a normal one; prints the outcomes as JSON.
SERVE = """
import json, resource, sys
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serve_bytes"]
requests = [open(p, "rb").read() for p in sys.argv[2:]]
serve(image_bytes=tf.constant(requests[-1:]))  # traces and warms
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) for l in f if l.startswith("VmSize")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = []
for data in requests:
    try:
        out.append(serve(image_bytes=tf.constant([data]))["classes"].numpy().tolist())
    except (tf.errors.InvalidArgumentError, MemoryError, tf.errors.ResourceExhaustedError) as err:
        out.append(type(err).__name__ + ": " + err.message if hasattr(err, "message") else str(err))
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"growth_mb": growth, "out": out}))
"""


def _png_header(width, height):
    """A PNG's signature and IHDR for width x height 8-bit RGB, then a truncated IDAT."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + body)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_serve_bytes_refuses_from_the_header_and_keeps_serving(tmp_path):
    from helpers import tiny_mixer

    from keras_mixer.export.saved_model import export_saved_model

    path = export_saved_model(tiny_mixer(), str(tmp_path / "srv"))
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(20000, 20000))  # 1.2 GB decoded
    long = _strip(tmp_path, "long.png", 1_000_000, 1)
    text = tmp_path / "text"
    text.write_bytes(b"not an image at all, just text")
    _photo(tmp_path / "photo.jpg", 6)  # EXIF turned in the graph
    normal = tmp_path / "normal.jpg"
    normal.write_bytes(tf.io.encode_jpeg(np.full((40, 30, 3), 99, np.uint8)).numpy())
    run = subprocess.run([sys.executable, "-c", SERVE, path, str(huge), long, str(text),
                          str(tmp_path / "photo.jpg"), str(normal)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    huge_out, long_out, text_out, photo_out, normal_out = result["out"]
    assert re.search(key_parts("InvalidArgumentError", "image_bytes:", "at most 50,000,000 pixels",
                               "[20000 20000]"), huge_out), huge_out
    assert re.search(key_parts("InvalidArgumentError", "image_bytes:",
                               f"aspect ratio of at most {MAX_ASPECT_RATIO}:1", "[1 1000000]"),
                     long_out), long_out
    assert re.search(key_parts("InvalidArgumentError", "image_bytes:", "JPEG, PNG, GIF, BMP or WebP"),
                     text_out), text_out
    for out in (photo_out, normal_out):  # still serving
        assert isinstance(out, list) and len(out[0]) == 5, out
    assert result["growth_mb"] < 200, result


@pytest.mark.parametrize("fmt, options", [
    ("PNG", {}), ("JPEG", {}), ("GIF", {}), ("BMP", {}), ("WEBP", {}), ("WEBP", {"lossless": True}),
    ("WEBP", {"exif": b"Exif\0\0"})])  # VP8 , VP8L and VP8X chunks
def test_serve_bytes_reads_the_size_of_every_format_from_its_header(fmt, options):
    from keras_mixer.export.saved_model import _header_shape

    for width, height in ((37, 5), (3, 61)):
        data = _pil_bytes(Image.new("RGB", (width, height), (1, 2, 3)), fmt, **options)
        assert _header_shape(tf.constant(data)).numpy().tolist() == [height, width], (fmt, options)
    assert _header_shape(tf.constant(b"BM" + b"\0" * 40)).numpy().tolist() == [0, 0]
    top_down = bytearray(_pil_bytes(Image.new("RGB", (7, 9)), "BMP"))
    top_down[22:26] = (-9).to_bytes(4, "little", signed=True)
    assert _header_shape(tf.constant(bytes(top_down))).numpy().tolist() == [9, 7]
