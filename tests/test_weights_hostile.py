"""Hostile weight files (issue #19 items 5 and 6): each is refused with a
ValueError naming the file, never an AttributeError/TypeError/OverflowError,
and for .safetensors exactly what the format's own library refuses."""

import json
import struct

import numpy as np
import pytest

import timm_reference
from helpers import key_parts
from keras_mixer.weights import timm

F32 = np.arange(6, dtype="<f4").tobytes()  # 24 bytes: a (2, 3) F32 tensor


def _entry(shape=(2, 3), offsets=(0, 24), dtype="F32"):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def _file(path, header_text, data=F32):
    text = header_text.encode() if isinstance(header_text, str) else header_text
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _json(header):
    return json.dumps(header, separators=(",", ":"))


HOSTILE = {
    "not-an-object": ("[1, 2]", F32),
    "a-string": ('"x"', F32),
    "duplicated-field": ('{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24],'
                         '"dtype":"F16"}}', F32),
    "duplicated-key": ('{"a":%s,"a":%s}' % (_json(_entry()), _json(_entry(offsets=(24, 48)))),
                       F32 + F32),
    "metadata-not-str": (_json({"__metadata__": {"k": 1}, "a": _entry()}), F32),
    "metadata-not-map": (_json({"__metadata__": "x", "a": _entry()}), F32),
    "entry-not-object": (_json({"a": 3}), F32),
    "unknown-dtype": (_json({"a": _entry(dtype="F99")}), F32),
    "float-offsets": (_json({"a": _entry(offsets=(0.0, 24.0))}), F32),
    "negative-offset": (_json({"a": _entry(offsets=(-24, 0))}), F32),
    "bool-dims": (_json({"a": _entry(shape=(True, 6))}), np.zeros(1, "<f4").tobytes()),
    "float-dims": (_json({"a": _entry(shape=(2.0, 3))}), F32),
    "negative-dims": (_json({"a": _entry(shape=(-2, -3))}), F32),
    "string-shape": (_json({"a": {"dtype": "F32", "shape": "23", "data_offsets": [0, 24]}}), F32),
    "missing-offsets": (_json({"a": {"dtype": "F32", "shape": [2, 3]}}), F32),
    "three-offsets": (_json({"a": _entry(offsets=(0, 12, 24))}), F32),
    "overflowing-count": (_json({"a": _entry(shape=(2**40, 2**40), offsets=(0, 24))}), F32),
    "overflow-then-zero": (_json({"a": _entry(shape=(2**40, 2**40, 0), offsets=(0, 0))}), b""),
    "list-dtype": (_json({"a": {"dtype": ["F32"], "shape": [2, 3], "data_offsets": [0, 24]}}),
                   F32),
    "deep-nesting": ('{"a":' + "[" * 100000 + "]" * 100000 + "}", F32),
    "wrong-size": (_json({"a": _entry(offsets=(0, 20))}), F32),
    "overlap": (_json({"a": _entry(), "b": _entry()}), F32),
    "gap": (_json({"a": _entry(offsets=(4, 28))}), F32 + b"\0" * 4),
    "trailing-bytes": (_json({"a": _entry()}), F32 + b"\0" * 8),
    "short-data": (_json({"a": _entry()}), F32[:20]),
    "not-utf8": (b'{"a\xff":1}', F32),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_safetensors_refused_as_the_library_refuses(tmp_path, name):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    header, data = HOSTILE[name]
    path = _file(tmp_path / f"{name}.safetensors", header, data)
    with pytest.raises(Exception):
        safetensors_numpy.load_file(str(path))
    with pytest.raises(ValueError, match=key_parts(f"weights: {str(path)!r}")):
        timm.safetensors_headers(str(path))


def test_safetensors_duplicated_key_refused_even_when_identical(tmp_path):
    # The library keeps the last of two identical entries; ours refuses any
    # duplicate, as the format says keys are unique (the one stricter case).
    path = _file(tmp_path / "dup.safetensors",
                 '{"a":%s,"a":%s}' % (_json(_entry()), _json(_entry())))
    with pytest.raises(ValueError, match=key_parts(f"weights: {str(path)!r}", "duplicated", "a")):
        timm.safetensors_headers(str(path))


@pytest.mark.parametrize("raw", [b"", b"\1\0\0", struct.pack("<Q", 2**63) + b"{}",
                                 struct.pack("<Q", 100) + b"{}"], ids=["empty", "short",
                                                                     "huge-size", "short-header"])
def test_safetensors_truncated_header(tmp_path, raw):
    path = tmp_path / "m.safetensors"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=key_parts(f"weights: {str(path)!r}")):
        timm.safetensors_headers(str(path))


def test_safetensors_valid_files_read_as_the_library_reads(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    arrays = {"a": rng.standard_normal((2, 3)).astype("<f4"),
              "b": rng.standard_normal((4,)).astype("<f2"),
              "c": rng.standard_normal((3, 1)).astype(ml_dtypes.bfloat16),
              "empty": np.zeros((0, 5), "<f4")}
    header, offset, data = {"__metadata__": {"format": "pt"}}, 0, b""
    for key, array in arrays.items():
        dtype = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}[array.dtype.name]
        blob = array.tobytes()
        header[key] = _entry(array.shape, (offset, offset + len(blob)), dtype)
        offset, data = offset + len(blob), data + blob
    text = _json(header)
    path = _file(tmp_path / "ok.safetensors", text + " " * (-len(text) % 8), data)
    theirs = safetensors_numpy.load_file(str(path))  # BF16 comes back as raw 16-bit words
    ours = timm.read_safetensors(str(path), list(arrays))
    for key, array in arrays.items():
        expected = array.astype(np.float32) if array.dtype.name == "bfloat16" else array
        np.testing.assert_array_equal(ours[key], expected)
        if array.dtype.name != "bfloat16":
            np.testing.assert_array_equal(theirs[key], ours[key])
        assert ours[key].shape == theirs[key].shape


def test_timm_reference_writer_is_read_by_the_library(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {"x": np.ones((2, 2), np.float32), "y": np.arange(3, dtype=np.float32)}
    timm_reference.write_safetensors(tmp_path / "m.safetensors", tensors)
    loaded = safetensors_numpy.load_file(str(tmp_path / "m.safetensors"))
    for key in tensors:
        np.testing.assert_array_equal(loaded[key], tensors[key])


# --- timm config.json --------------------------------------------------------

def _repo_config(tmp_path, edit):
    """A timm B/16 repository directory whose config.json went through `edit`
    (model.safetensors is a stub: only config.json is read to resolve it)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    config = {"architecture": "mixer_b16_224", "num_classes": 10,
              "label_names": [f"c{i}" for i in range(10)],
              "pretrained_cfg": {"tag": "miil_in21k_ft_in1k", "input_size": [3, 224, 224],
                                 "interpolation": "bilinear", "crop_pct": 0.875,
                                 "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                                 "num_classes": 10}}
    edit(config)
    (repo / "config.json").write_text(json.dumps(config))  # NaN is written as NaN
    (repo / "model.safetensors").write_bytes(b"")
    return repo


def _set(field, value):
    def edit(config):
        where = config["pretrained_cfg"] if field.startswith("pretrained_cfg.") else config
        where[field.removeprefix("pretrained_cfg.")] = value
    return edit


NAN, INF = float("nan"), float("inf")
BAD_CONFIG = [
    ("pretrained_cfg.std", [0.0, 1.0, 1.0], "1 or 3 finite positive numbers"),
    ("pretrained_cfg.std", [NAN, 1.0, 1.0], "1 or 3 finite positive numbers"),
    ("pretrained_cfg.std", [-1.0], "1 or 3 finite positive numbers"),
    ("pretrained_cfg.std", [1.0, 1.0], "1 or 3 finite positive numbers"),
    ("pretrained_cfg.std", 0.5, "1 or 3 finite positive numbers"),
    ("pretrained_cfg.mean", [INF, 0.0, 0.0], "1 or 3 finite numbers"),
    ("pretrained_cfg.mean", [0.0, 0.0, 0.0, 0.0], "1 or 3 finite numbers"),
    ("pretrained_cfg.mean", ["0.5", 0.5, 0.5], "1 or 3 finite numbers"),
    ("num_classes", 10.7, "a positive int"),
    ("num_classes", True, "a positive int"),
    ("num_classes", 0, "a positive int"),
    ("num_classes", "10", "a positive int"),
    ("pretrained_cfg", [], "an object"),
    ("pretrained_cfg", "x", "an object"),
    ("pretrained_cfg.crop_pct", 0, "a number in (0, 1]"),
    ("pretrained_cfg.crop_pct", 5, "a number in (0, 1]"),
    ("pretrained_cfg.crop_pct", NAN, "a number in (0, 1]"),
    ("pretrained_cfg.crop_pct", "0.9", "a number in (0, 1]"),
    ("pretrained_cfg.input_size", 224, "[3, height, width] of positive ints"),
    ("pretrained_cfg.input_size", [3, 224], "[3, height, width] of positive ints"),
    ("pretrained_cfg.input_size", [3, 0, 224], "[3, height, width] of positive ints"),
    ("pretrained_cfg.input_size", [3, 224.0, 224], "[3, height, width] of positive ints"),
    ("pretrained_cfg.input_size", [1, 224, 224], "[3, height, width] of positive ints"),
    ("pretrained_cfg.interpolation", "nearest", "one of ('bicubic', 'bilinear')"),
    ("pretrained_cfg.interpolation", 3, "one of ('bicubic', 'bilinear')"),
    ("architecture", 5, "a timm MLP-Mixer"),
    ("architecture", ["mixer_b16_224"], "a timm MLP-Mixer"),
    ("architecture", "vit_base_patch16_224", "a timm MLP-Mixer"),
    ("label_names", ["a", "b"], "a list of 10 strings"),
    ("label_names", list(range(10)), "a list of 10 strings"),
    ("label_names", "abcdefghij", "a list of 10 strings"),
]


@pytest.mark.parametrize("field, value, allowed", BAD_CONFIG,
                         ids=[f"{f}={v!r}" for f, v, _ in BAD_CONFIG])
def test_timm_config_field_refused(tmp_path, field, value, allowed):
    from keras_mixer import weights as weights_lib

    repo = _repo_config(tmp_path, _set(field, value))
    path = str(repo / "config.json")
    with pytest.raises(ValueError, match=key_parts(
            f"weights: {path!r}", field, allowed, repr(value)[:20])):
        weights_lib.resolve_weights(str(repo), "B/16")


def test_timm_config_not_an_object(tmp_path):
    from keras_mixer import weights as weights_lib

    repo = _repo_config(tmp_path, lambda config: None)
    (repo / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=key_parts(repr(str(repo / "config.json")),
                                                   "a JSON object", "[1, 2]")):
        weights_lib.resolve_weights(str(repo), "B/16")


def test_timm_config_valid_fields_travel(tmp_path):
    from keras_mixer import weights as weights_lib

    repo = _repo_config(tmp_path, _set("pretrained_cfg.mean", [0.5]))
    source = weights_lib.resolve_weights(str(repo), "B/16")
    assert source.classes == 10 and source.resolution == (224, 224)
    assert source.label_names == [f"c{i}" for i in range(10)]
    assert source.preprocessing["interpolation"] == "bilinear"
    assert source.preprocessing["offset"] == -0.5


def test_predict_names_classes_from_the_repositorys_label_names(tmp_path):
    from journeys import S32, photo

    from keras_mixer.inference import predict

    sd = timm_reference.random_state_dict(
        np.random.default_rng(0), blocks=S32["num_blocks"], patch=32, hidden=S32["hidden"],
        d_s=S32["d_s"], d_c=S32["d_c"], tokens=S32["tokens"], classes=3)
    repo = str(timm_reference.write_repo(
        tmp_path / "repo", sd, architecture="mixer_s32_224", tag="in1k_custom",
        mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic", classes=3,
        label_names=["cat", "dog", "bird"]))
    image = photo(tmp_path / "photo.png", np.random.default_rng(1))
    got = predict([image], model="S/32", weights=repo, top=3)[0]
    assert sorted(name for name, _ in got) == ["bird", "cat", "dog"]
    mine = predict([image], model="S/32", weights=repo, top=3, labels=["a", "b", "c"])[0]
    assert [s for _, s in mine] == pytest.approx([s for _, s in got])
    assert sorted(name for name, _ in mine) == ["a", "b", "c"]


# --- .npz members ----------------------------------------------------------

def _npy(header, data=b"", version=1):
    """A .npy member written by hand: magic, header length, the header dict text."""
    text = header.encode("latin1")
    prefix = 10 if version == 1 else 12
    text += b" " * (-(prefix + len(text) + 1) % 64) + b"\n"
    size = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text + data


def _npz(path, members):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return str(path)


def _h(descr="'<f4'", fortran="False", shape="(2, 3)"):
    return "{'descr': %s, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)


NPZ_HOSTILE = {
    "negative-shape": ("stem/bias.npy", _npy(_h(shape="(-2, 3)"), F32)),
    "negative-shape-fills": ("stem/bias.npy", _npy(_h(shape="(-2, -3)"), F32)),
    "absurd-shape": ("stem/bias.npy", _npy(_h(shape="(2**62, 2**62)"), F32)),
    "absurd-shape-int": ("stem/bias.npy", _npy(_h(shape="(4611686018427387904, 4)"), F32)),
    "short-data": ("stem/bias.npy", _npy(_h(), F32[:20])),
    "long-data": ("stem/bias.npy", _npy(_h(), F32 + F32)),
    "float-shape": ("stem/bias.npy", _npy(_h(shape="(2.0, 3)"), F32)),
    "object-dtype": ("stem/bias.npy", _npy(_h(descr="'|O'"), F32)),
    "structured-object": ("stem/bias.npy", _npy(_h(descr="[('a', '|O')]"), F32)),
    "fortran-not-bool": ("stem/bias.npy", _npy(_h(fortran="1"), F32)),
    "fortran-string": ("stem/bias.npy", _npy(_h(fortran="'yes'"), F32)),
    "bad-descr": ("stem/bias.npy", _npy(_h(descr="'zz'"), F32)),
    "not-a-dict": ("stem/bias.npy", _npy("[1, 2, 3]", F32)),
    "code-in-header": ("stem/bias.npy", _npy("__import__('os')", F32)),
    "not-npy-member": ("README.txt", b"hello"),
    "npy-name-not-npy": ("stem/bias.npy", b"PK not an array at all"),
    "unknown-version": ("stem/bias.npy", _npy(_h(), F32)[:6] + b"\x09\x00" + _npy(_h(), F32)[8:]),
    "pickled-object-array": ("stem/bias.npy", None),
}


@pytest.mark.parametrize("name", sorted(NPZ_HOSTILE))
def test_npz_malformed_member_refused_naming_file_and_member(tmp_path, name):
    import io

    from keras_mixer import weights as weights_lib
    from keras_mixer.weights import npz

    member, blob = NPZ_HOSTILE[name]
    if blob is None:  # what np.save(allow_pickle=True) writes for objects
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        blob = buffer.getvalue()
    good = io.BytesIO()
    np.save(good, np.zeros(3, np.float32))
    path = _npz(tmp_path / "w.npz", {"stem/kernel.npy": good.getvalue(), member: blob})
    parts = key_parts(f"weights: {path!r}", repr(member))
    with pytest.raises(ValueError, match=parts):
        npz.npz_headers(path)
    with pytest.raises(ValueError, match=parts):
        weights_lib.resolve_weights(path, "B/16")


def test_npz_duplicated_member_refused(tmp_path):
    import warnings

    from keras_mixer.weights import npz

    member = _npy(_h(), F32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
        path = _npz(tmp_path / "w.npz", {"a.npy": member})
        import zipfile
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("a.npy", member)
    with pytest.raises(ValueError, match=key_parts(f"weights: {path!r}", "'a.npy'", "twice")):
        npz.npz_headers(path)


@pytest.mark.parametrize("fortran", [False, True])
def test_npz_valid_members_read(tmp_path, fortran):
    from keras_mixer.weights import npz

    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    array = np.asfortranarray(array) if fortran else array
    path = str(tmp_path / "w.npz")
    np.savez(path, **{"stem/bias": array, "empty": np.zeros((0, 4), np.float16)})
    assert npz.npz_headers(path) == {"stem/bias": ((2, 3), "float32"),
                                     "empty": ((0, 4), "float16")}
    np.testing.assert_array_equal(npz.read_npz(path, ["stem/bias"])["stem/bias"], array)
