"""Keras Mixer -> a timm repository: what timm publishes on the Hugging Face Hub.

    export_timm("runs/default/model.keras", "out/mixer_timm")
    # later, with PyTorch and timm:
    timm.create_model("local-dir:out/mixer_timm", pretrained=True)

The directory holds `config.json` (timm's fields: `architecture`, `num_classes`,
`num_features`, `global_pool`, `model_args`, `label_names`, `pretrained_cfg` with
the checkpoint's mean/std, crop_pct, interpolation and input size) and
`model.safetensors` under timm's keys in PyTorch layouts (Conv2d OIHW, Linear
(out, in)): the inverse of `keras_mixer.weights.timm`, which reads it back.

What timm can state is what is exported: the six Mixer architectures timm
registers (`mixer_s32_224` ... `mixer_l16_224`: blocks, patch and width fixed by
the name), other image sizes and MLP widths through `model_args` (`img_size`,
`mlp_ratio`, which timm's MlpMixer takes: a high-resolution, tiled model is
`img_size=448, mlp_ratio=[2.0, 4.0]` for B/16). Other depths, widths or patch
sizes (S/8, H/14, custom configs) are refused. timm's MlpMixer runs exact GELU
(`nn.GELU`) and its config cannot name another (`act_layer` must be a class): a
model with the authors' tanh GELU says so in `pretrained_cfg.notes` and in the
`keras_mixer.gelu_form` field, which keras-mixer's loader reads back.
"""

import json
import math
import os
import struct

import numpy as np

from keras_mixer import files, inference
from keras_mixer import labels as labels_lib
from keras_mixer.preprocessing import EvalTransform
from keras_mixer import weights as weights_lib
from keras_mixer.weights import checkpoint
from keras_mixer.weights.timm import timm_to_authors_keys

from . import common

# timm's registered Mixers (timm/models/mlp_mixer.py): (blocks, patch, width) -> name.
# Their other arguments default to img_size=224, mlp_ratio=(0.5, 4.0).
ARCHITECTURES = {(8, 32, 512): "mixer_s32_224", (8, 16, 512): "mixer_s16_224",
                 (12, 32, 768): "mixer_b32_224", (12, 16, 768): "mixer_b16_224",
                 (24, 32, 1024): "mixer_l32_224", (24, 16, 1024): "mixer_l16_224"}
TIMM_SIZE = 224
TIMM_MLP_RATIO = (0.5, 4.0)
FILES = ("model.safetensors", "config.json")
TANH_NOTE = ("trained with the tanh approximation of GELU (keras-mixer gelu_form='tanh', "
             "Flax's default); timm's MlpMixer computes exact GELU (nn.GELU), so its "
             "logits differ slightly from the model's own")


def export_timm(model, output, *, weights=None, labels=None, overwrite=False):
    """Writes the timm repository directory `output`; returns a report dict.

    model: a keras.Model, a `.keras` file, or a variant name (with `weights`).
    labels: class names written as `label_names` (a list, a text file with one
        name per line, or "digits"); None: a timm repository's own `label_names`
        when `weights` is one, else none are written.
    overwrite: replace config.json and model.safetensors in a non-empty
        `output` (other files there are left alone); without it a non-empty
        directory is refused.
    """
    output = _check_output(output, overwrite)
    if not (labels is None or isinstance(labels, (str, os.PathLike, list, tuple))):
        raise ValueError(f"labels: expected None, a list of class names, a text file or "
                         f"'digits'; got {labels!r}")
    net = inference.load_model(common.fspath(model), weights=weights)
    if labels is None and weights is not None and isinstance(model, str) \
            and not model.endswith(".keras"):
        labels = weights_lib.resolve_weights(weights, model).label_names
    tensors = timm_state_dict(net)
    config = timm_config(net, labels=labels)
    os.makedirs(output, exist_ok=True)
    # Weights first, then the config that names them: a repository is complete
    # once config.json is in place.
    with files.atomic_path(os.path.join(output, FILES[0]), room=tensors.values()) as tmp:
        write_safetensors(tmp, tensors)
    files.write_bytes(os.path.join(output, FILES[1]),
                      (json.dumps(config, indent=2) + "\n").encode("utf-8"))
    return {"path": output, "files": list(FILES), "architecture": config["architecture"],
            "model_args": config.get("model_args", {}),
            "gelu_form": config["keras_mixer"]["gelu_form"],
            "tensors": len(tensors), "bytes": os.path.getsize(os.path.join(output, FILES[0])),
            "pretrained_cfg": config["pretrained_cfg"]}


def _check_output(output, overwrite):
    output = common.fspath(output)
    if not isinstance(output, str) or not output:
        raise ValueError(f"output: expected a directory path; got {output!r}")
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite: expected True or False; got {overwrite!r}")
    if os.path.lexists(output) and not os.path.isdir(output):
        raise FileExistsError(f"output: {output!r} exists and is not a directory; expected "
                              "a directory for config.json and model.safetensors")
    if os.path.isdir(output) and os.listdir(output) and not overwrite:
        raise FileExistsError(f"output: {output!r} is a non-empty directory; pass "
                              "--overwrite (overwrite=True) to replace its "
                              f"{' and '.join(FILES)}")
    return output


def mixer_facts(net):
    """What timm needs of a keras-mixer Mixer: its blocks' sizes, patch, input
    size, GELU form and head; raises for anything else."""
    from keras_mixer.layers import MixerBlock

    blocks = [layer for layer in net.layers if isinstance(layer, MixerBlock)]
    try:
        stem, head = net.get_layer("stem"), net.get_layer("head")
    except ValueError:
        raise ValueError(
            f"model: {net.name!r} has no top-level 'stem' and 'head' layers; expected a "
            "classifier built by keras_mixer.Mixer with include_top=True (timm's MlpMixer "
            "has a head)") from None
    if not blocks or stem.kernel_size[0] != stem.kernel_size[1]:
        raise ValueError(f"model: {net.name!r} is not a keras_mixer Mixer with square patches")
    forms = {block.gelu_form for block in blocks}
    if len(forms) != 1:
        raise ValueError(f"model: its blocks mix GELU forms {sorted(forms)}; expected one")
    return dict(num_blocks=len(blocks), patch_size=int(stem.kernel_size[0]),
                hidden_dim=blocks[0].hidden_dim, tokens_mlp_dim=blocks[0].tokens_mlp_dim,
                channels_mlp_dim=blocks[0].channels_mlp_dim, gelu_form=forms.pop(),
                size=common.static_image_size(net), classes=int(head.units))


def timm_config(net, *, labels=None):
    """timm's config.json of a Mixer (as timm's `save_config_for_hf` writes it)."""
    facts = mixer_facts(net)
    key = (facts["num_blocks"], facts["patch_size"], facts["hidden_dim"])
    if key not in ARCHITECTURES:
        raise ValueError(
            f"model: timm has no Mixer of {key[0]} blocks, patch {key[1]}, width {key[2]} "
            f"(its registered architectures, as (blocks, patch, width): "
            f"{', '.join(f'{v} {k}' for k, v in ARCHITECTURES.items())}); expected one of those")
    model_args = {}
    height, width = facts["size"]
    if (height, width) != (TIMM_SIZE, TIMM_SIZE):
        model_args["img_size"] = height if height == width else [height, width]
    ratios = [_ratio(facts[d], facts["hidden_dim"]) for d in ("tokens_mlp_dim", "channels_mlp_dim")]
    if tuple(ratios) != TIMM_MLP_RATIO:
        model_args["mlp_ratio"] = ratios
    classes = facts["classes"]
    names = None if labels is None else labels_lib.class_names(classes, labels)
    transform = EvalTransform.of(net)
    mean, std = _mean_std(net)
    # The exact GELU (timm's) is "erf"; "sigmoid" is the tanh approximation rewritten.
    gelu_form = "erf" if facts["gelu_form"] == "erf" else "tanh"
    pretrained_cfg = {
        "custom_load": False, "input_size": [3, height, width], "fixed_input_size": True,
        "interpolation": transform.interpolation, "crop_pct": float(transform.crop_fraction),
        "crop_mode": "center", "mean": mean, "std": std, "num_classes": classes,
        "pool_size": None, "first_conv": "stem.proj", "classifier": "head"}
    if gelu_form == "tanh":
        pretrained_cfg["notes"] = [TANH_NOTE]
    config = {"architecture": ARCHITECTURES[key], "num_classes": classes,
              "num_features": facts["hidden_dim"], "global_pool": "avg"}
    if names is not None:
        config["label_names"] = names
    if model_args:
        config["model_args"] = model_args
    config["pretrained_cfg"] = pretrained_cfg
    config["keras_mixer"] = {"gelu_form": gelu_form}
    return config


def _ratio(dim, hidden):
    """mlp_ratio r with int(r * hidden) == dim, as timm's MixerBlock computes it."""
    ratio = dim / hidden
    for _ in range(4):  # one ulp up covers a product that rounds just below dim
        if int(ratio * hidden) == dim:
            return ratio
        ratio = math.nextafter(ratio, math.inf)
    raise ValueError(f"model: no mlp_ratio gives {dim} units from width {hidden}")


def _mean_std(net):
    """timm's mean/std (of x / 255) equal to the model's rescaling scale * x + offset."""
    try:
        layer = net.get_layer("rescaling")
    except ValueError:
        raise ValueError(f"model: {net.name!r} has no 'rescaling' layer (its input "
                         "normalization); expected a model built by keras_mixer.Mixer") from None
    scale = np.broadcast_to(np.asarray(layer.scale, np.float64), (3,))
    offset = np.broadcast_to(np.asarray(layer.offset, np.float64), (3,))
    std = 1.0 / (255.0 * scale)
    mean = -offset * std
    # 12 significant digits: the decimals a config states (0.5, 0.229), not the
    # last bit of the round trip through 1 / (255 * std).
    return ([float(f"{v:.12g}") + 0.0 for v in mean], [float(f"{v:.12g}") for v in std])


def timm_state_dict(net):
    """{timm key: float32 array in PyTorch's layout} of a Mixer's weights."""
    facts = mixer_facts(net)
    variables = checkpoint.checkpoint_variables(net)
    out = {}
    for key, (ours, axes) in timm_to_authors_keys(facts["num_blocks"]).items():
        array = np.asarray(variables[ours], np.float32)
        # The loader's transposes (PyTorch -> Keras) inverted: OIHW <- HWIO, (out, in) <- (in, out).
        out[key] = np.ascontiguousarray(array.transpose(np.argsort(axes)) if axes else array)
    return out


# --- the safetensors format ----------------------------------------------------

_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<f8"): "F64"}


def safetensors_bytes_header(tensors):
    """The header the `safetensors` library writes for `tensors` ({key: array} of
    one float dtype): tensors sorted by name, back to back, compact JSON padded
    with spaces to a multiple of 8 bytes."""
    header, offset = {}, 0
    for key in sorted(tensors):
        array = tensors[key]
        dtype = _DTYPES.get(np.dtype(array.dtype).newbyteorder("<"))
        if dtype is None:
            raise ValueError(f"tensors: {key!r} has dtype {array.dtype}; expected float")
        header[key] = {"dtype": dtype, "shape": list(array.shape),
                       "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return blob + b" " * (-len(blob) % 8)


def write_safetensors(path, tensors):
    """Writes `tensors` ({key: array}) as `safetensors.numpy.save_file` does,
    byte for byte (tests/test_export_timm.py compares the two)."""
    blob = safetensors_bytes_header(tensors)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for key in sorted(tensors):
            f.write(np.ascontiguousarray(tensors[key], tensors[key].dtype.newbyteorder("<"))
                    .tobytes())
        f.flush()
        os.fsync(f.fileno())
