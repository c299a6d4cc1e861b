"""Keras Mixer -> a keras-hub preset directory, written by keras-hub's own
`save_to_preset`:

    export_keras_hub("runs/default/model.keras", "out/mixer_hub")
    # later, anywhere with keras-mixer and keras-hub installed:
    import keras_mixer, keras_hub
    keras_hub.models.ImageClassifier.from_preset("out/mixer_hub").predict(raw_images)

The directory holds keras-hub's layout: `config.json` (MixerBackbone),
`metadata.json`, `model.weights.h5`, and for a model with a head `task.json`
(MixerImageClassifier) and `task.weights.h5`; then `preprocessor.json` and
`image_converter.json` (MixerImageConverter: the checkpoint's size, crop
fraction, interpolation, and its normalization as keras-hub's scale/offset).
The classes are `keras_mixer.hub`'s, registered with Keras once keras_mixer and
keras_hub are both imported.

The preset is written into a scratch directory beside the output, loaded back
with keras-hub's `ImageClassifier.from_preset` (`Backbone.from_preset` for a
model without a head) and compared with the Keras model on CHECK_IMAGES seeded
raw images of another size (keras-mixer's eval transform against the
converter's) before it is renamed into place.
"""

import os

import numpy as np

from keras_mixer import files, inference
from keras_mixer.preprocessing import EvalTransform

from . import common

# float32, same operations in another order (2-D vs 1-D pooling): the
# project's float32 bar, on the model's own outputs.
DEFAULT_TOLERANCE = 1e-4
CHECK_IMAGES = 2
# keras-hub's upload_preset checks these exist (preset_utils._validate_backbone).
BACKBONE_FILES = ("config.json", "metadata.json", "model.weights.h5")
TASK_FILES = ("task.json", "task.weights.h5")
PREPROCESSOR_FILES = ("preprocessor.json", "image_converter.json")


def export_keras_hub(model, output, *, weights=None, tolerance=DEFAULT_TOLERANCE,
                     overwrite=False):
    """Writes the keras-hub preset directory `output`; returns a report dict.

    model: a keras.Model, a `.keras` file, or a variant name (with `weights`).
    tolerance: largest absolute difference allowed between keras-hub's and
        keras-mixer's outputs on the check images (None: do not check).
    """
    output = common.fspath(output)
    if not isinstance(output, str) or not output:
        raise ValueError(f"output: expected a directory path; got {output!r}")
    if output.endswith((".keras", ".h5", ".json", ".tflite", ".onnx")):
        raise ValueError(f"output: expected a directory path (keras-hub's preset layout); "
                         f"got {output!r}, a file name")
    if os.path.lexists(output) and not os.path.isdir(output):
        raise FileExistsError(f"output: {output!r} exists and is not a directory")
    files.check_output(output, overwrite=overwrite)
    if tolerance is not None and not (isinstance(tolerance, (int, float))
                                      and not isinstance(tolerance, bool) and tolerance > 0):
        raise ValueError(f"tolerance: expected None or a number > 0; got {tolerance!r}")
    try:
        import keras_hub  # noqa: F401 (registers keras_mixer.hub through the import hook)
    except ImportError as err:
        raise ImportError("export_keras_hub needs keras-hub: pip install 'keras-mixer[keras-hub]'"
                          ) from err
    from keras_mixer import hub

    net = inference.load_model(common.fspath(model), weights=weights)
    size = common.static_image_size(net)
    head = _has_head(net)
    kind = common.output_kind(net) if head else None
    backbone = hub.MixerBackbone(**_backbone_config(net, size))
    for layer in backbone.layers:
        if layer.weights:
            layer.set_weights(net.get_layer(layer.name).get_weights())
    preprocessor = hub.MixerImageClassifierPreprocessor(
        image_converter=hub.MixerImageConverter(**_converter_config(net, size)))
    if head:
        task = hub.MixerImageClassifier(
            backbone=backbone, num_classes=int(net.output_shape[-1]), preprocessor=preprocessor,
            activation="softmax" if kind == "probabilities" else None,
            dropout=_head_dropout(net))
        task.output_dense.set_weights(net.get_layer("head").get_weights())

    with files.atomic_path(output, directory=True) as tmp:
        files.check_room(os.path.join(tmp, "model.weights.h5"), files.nbytes(net.weights),
                         variables=len(net.weights))
        if head:
            task.save_to_preset(tmp)
        else:
            backbone.save_to_preset(tmp)
            preprocessor.save_to_preset(tmp)
        check = _check(tmp, net, size, head, tolerance)
    names = BACKBONE_FILES + (TASK_FILES if head else ()) + PREPROCESSOR_FILES
    return {"path": output, "files": [n for n in names if os.path.exists(os.path.join(output, n))],
            "task": "MixerImageClassifier" if head else None, "output_kind": kind,
            "preprocessing": {"image_size": list(size), **EvalTransform.of(net).to_json(),
                              **_normalization(net)},
            "check": check}


def _has_head(net):
    try:
        net.get_layer("head")
        return True
    except ValueError:
        return False


def _backbone_config(net, size):
    from keras_mixer.layers import MixerBlock

    blocks = [layer for layer in net.layers if isinstance(layer, MixerBlock)]
    if not blocks:
        raise ValueError(f"model: {net.name!r} has no top-level MixerBlock layers; expected a "
                         "model built by keras_mixer.Mixer")
    first = blocks[0]
    patch = net.get_layer("stem").kernel_size
    if patch[0] != patch[1]:
        raise ValueError(f"model: expected a square patch; got stem kernel {patch}")
    return dict(image_shape=(*size, 3), num_blocks=len(blocks), patch_size=int(patch[0]),
                hidden_dim=first.hidden_dim, tokens_mlp_dim=first.tokens_mlp_dim,
                channels_mlp_dim=first.channels_mlp_dim, gelu_form=first.gelu_form,
                drop_path_rate=float(blocks[-1].drop_path_rate))


def _normalization(net):
    """The model's `rescaling` layer as keras-hub's ImageConverter states it."""
    try:
        layer = net.get_layer("rescaling")
    except ValueError:
        raise ValueError(f"model: {net.name!r} has no 'rescaling' layer (its input "
                         "normalization); expected a model built by keras_mixer.Mixer") from None

    def plain(value):
        value = np.asarray(value, np.float64)
        return float(value) if value.ndim == 0 else [float(v) for v in value.ravel()]

    return {"scale": plain(layer.scale), "offset": plain(layer.offset)}


def _converter_config(net, size):
    transform = EvalTransform.of(net)
    return dict(image_size=size, crop_fraction=transform.crop_fraction,
                interpolation=transform.interpolation, **_normalization(net))


def _head_dropout(net):
    try:
        return float(net.get_layer("head_dropout").rate)
    except ValueError:
        return 0.0


def _check(preset, net, size, head, tolerance):
    """keras-hub's from_preset on raw images vs keras-mixer on the same images:
    the token map after the final LayerNorm (every weight but the head's) and,
    with a head, the outputs."""
    import keras_hub

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (CHECK_IMAGES, size[0] * 5 // 4 + 3, size[1] * 3 // 2, 3))
    raw = raw.astype(np.uint8)
    images = EvalTransform.of(net)(raw)  # keras-mixer's own transform, per batch
    trunk = type(net)(net.inputs, net.get_layer("pre_head_layer_norm").output)
    errors = {}
    if head:
        loaded = keras_hub.models.ImageClassifier.from_preset(preset)
        backbone, converter = loaded.backbone, loaded.preprocessor.image_converter
        errors["outputs"] = _max_error(net.predict(images, verbose=0),
                                       loaded.predict(raw, verbose=0))
    else:
        backbone = keras_hub.models.Backbone.from_preset(preset)
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    expected = np.asarray(trunk.predict(images, verbose=0))
    got = np.asarray(backbone.predict(converter(raw), verbose=0)).reshape(expected.shape)
    errors = {"features": _max_error(expected, got), **errors}
    worst = max(errors.values())
    if tolerance is not None and worst > tolerance:
        raise ValueError(
            f"tolerance: keras-hub's model differs from keras-mixer's by {worst:.3g} "
            f"({errors}) on {CHECK_IMAGES} check images; expected <= {tolerance} (pass "
            f"tolerance=None to export anyway)")
    return {"images": CHECK_IMAGES, "image_shape": list(raw.shape[1:]),
            "max_abs_error": errors}


def _max_error(expected, got):
    return float(np.max(np.abs(np.asarray(expected) - np.asarray(got))))
