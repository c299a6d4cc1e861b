"""timm's MlpMixer in NumPy, written from timm/models/mlp_mixer.py, and its files.

Independent of keras_mixer and of reference.py: it reads timm's own keys and
PyTorch layouts (Conv2d OIHW, Linear (out, in)), normalizes with the repository's
mean/std on [0, 1] inputs, and uses the GELU form its weights were trained with
(exact erf for PyTorch-trained ones). `write_repo` writes a repository snapshot
(config.json + model.safetensors) in the exact format timm publishes.
"""

import json
import math
import struct

import numpy as np

try:
    from scipy.special import erf
except ImportError:  # pragma: no cover
    erf = np.vectorize(math.erf)


def gelu(x, form):
    if form == "erf":
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, weight, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def linear(x, sd, name):
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def logits(images_0_255, sd, *, mean, std, gelu_form):
    """timm's forward: normalize, Conv2d patch embed, blocks, norm, mean, head."""
    x = (images_0_255.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    w = sd["stem.proj.weight"]  # (C, 3, P, P)
    c, _, p, _ = w.shape
    n, h, wd, _ = x.shape
    x = x.transpose(0, 3, 1, 2).reshape(n, 3, h // p, p, wd // p, p)
    patches = x.transpose(0, 2, 4, 1, 3, 5).reshape(n, (h // p) * (wd // p), 3 * p * p)
    x = patches @ w.reshape(c, -1).T + sd["stem.proj.bias"]  # flatten(2).transpose(1, 2)
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        b = f"blocks.{i}"
        y = layer_norm(x, sd[f"{b}.norm1.weight"], sd[f"{b}.norm1.bias"]).transpose(0, 2, 1)
        y = linear(gelu(linear(y, sd, f"{b}.mlp_tokens.fc1"), gelu_form), sd, f"{b}.mlp_tokens.fc2")
        x = x + y.transpose(0, 2, 1)
        y = layer_norm(x, sd[f"{b}.norm2.weight"], sd[f"{b}.norm2.bias"])
        x = x + linear(gelu(linear(y, sd, f"{b}.mlp_channels.fc1"), gelu_form), sd,
                       f"{b}.mlp_channels.fc2")
        i += 1
    x = layer_norm(x, sd["norm.weight"], sd["norm.bias"]).mean(axis=1)
    return linear(x, sd, "head")


def random_state_dict(rng, blocks, patch, hidden, d_s, d_c, tokens, classes):
    """Random float32 weights under timm's keys, in PyTorch layouts."""
    def w(out, inp):
        return (rng.standard_normal((out, inp)) / math.sqrt(inp)).astype(np.float32)

    def v(n, base=0.0):
        return (base + 0.1 * rng.standard_normal(n)).astype(np.float32)

    sd = {"stem.proj.weight": (rng.standard_normal((hidden, 3, patch, patch))
                               / math.sqrt(3 * patch * patch)).astype(np.float32),
          "stem.proj.bias": v(hidden)}
    for i in range(blocks):
        b = f"blocks.{i}"
        for norm in ("norm1", "norm2"):
            sd[f"{b}.{norm}.weight"], sd[f"{b}.{norm}.bias"] = v(hidden, 1.0), v(hidden)
        for mlp, d_in, d_h in (("mlp_tokens", tokens, d_s), ("mlp_channels", hidden, d_c)):
            sd[f"{b}.{mlp}.fc1.weight"], sd[f"{b}.{mlp}.fc1.bias"] = w(d_h, d_in), v(d_h)
            sd[f"{b}.{mlp}.fc2.weight"], sd[f"{b}.{mlp}.fc2.bias"] = w(d_in, d_h), v(d_in)
    sd["norm.weight"], sd["norm.bias"] = v(hidden, 1.0), v(hidden)
    sd["head.weight"], sd["head.bias"] = w(classes, hidden), v(classes)
    return sd


def write_safetensors(path, tensors):
    """The safetensors format: u64 header size, JSON header, raw little-endian data."""
    header, offset = {}, 0
    for key, array in tensors.items():
        size = array.astype("<f4").nbytes
        header[key] = {"dtype": "F32", "shape": list(array.shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for array in tensors.values():
            f.write(array.astype("<f4").tobytes())


def write_repo(directory, sd, *, architecture, tag, mean, std, interpolation, classes,
               crop_pct=0.875, label_names=None):
    """A timm Hugging Face repository snapshot: config.json + model.safetensors."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": architecture, "num_classes": classes, "num_features": 768,
        "global_pool": "avg",
        "pretrained_cfg": {"tag": tag, "custom_load": False, "input_size": [3, 224, 224],
                           "fixed_input_size": True, "interpolation": interpolation,
                           "crop_pct": crop_pct, "crop_mode": "center", "mean": list(mean),
                           "std": list(std), "num_classes": classes, "pool_size": None,
                           "first_conv": "stem.proj", "classifier": "head"},
    }
    if label_names is not None:
        config["label_names"] = list(label_names)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    write_safetensors(directory / "model.safetensors", sd)
    return directory
