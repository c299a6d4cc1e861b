"""`keras-mixer predict` and `keras-mixer convert`."""

import os

from keras_mixer import labels as labels_lib
from keras_mixer import weights as weights_lib


def load_model(model, weights=None):
    """A saved `.keras` Mixer, or a variant ("B/16") built with `weights`."""
    import keras

    from keras_mixer.model import Mixer

    if model.endswith(".keras"):
        if not os.path.isfile(model):
            raise FileNotFoundError(f"model: no such file: {model!r}")
        if weights is not None:
            raise ValueError(f"weights: a .keras file carries its own; got {weights!r}")
        return keras.models.load_model(model)
    return Mixer(model, weights=weights)


def predict(images, model="B/16", weights="imagenet", top=5, label_names=None):
    """Top-`top` classes of each image file: [[(label, score), ...], ...]."""
    import numpy as np
    import tensorflow as tf

    from keras_mixer.preprocessing import load_image

    missing = [p for p in images if not os.path.isfile(p)]
    if not images or missing:
        raise FileNotFoundError(f"images: no such file(s): {missing or images}")
    net = load_model(model, weights)
    size = tuple(net.input_shape[1:3])
    batch = tf.stack([load_image(p, size) for p in images])
    probs = np.asarray(net.predict(batch, verbose=0))
    classes = probs.shape[-1]
    if not (isinstance(top, int) and 1 <= top <= classes):
        raise ValueError(f"top: expected an int in [1, {classes}]; got {top!r}")
    if label_names is None and classes in labels_lib.LABEL_FILES:
        label_names = [name for _, name in labels_lib.imagenet_labels(classes)]
    if label_names is not None and len(label_names) != classes:
        raise ValueError(
            f"labels: the model has {classes} classes; got {len(label_names)} labels"
        )
    results = []
    for row in probs:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([(label_names[i] if label_names else str(i), float(row[i])) for i in best])
    return results


def convert(checkpoint, output, model=None, input_size=None, include_top=True, overwrite=False):
    """Authors' `.npz` -> `.keras` model or `.weights.h5`; returns the model."""
    from keras_mixer.model import VARIANTS, Mixer

    if not output.endswith((".keras", ".weights.h5")):
        raise ValueError(f"output: expected a path ending in .keras or .weights.h5; got {output!r}")
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"output: {output!r} exists; pass --overwrite to replace it")
    if not checkpoint.endswith(".npz"):
        raise ValueError(f"checkpoint: expected an authors' .npz file; got {checkpoint!r}")
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint: no such file: {checkpoint!r}")
    found = weights_lib.infer_variant(weights_lib.npz_shapes(checkpoint), VARIANTS)
    if model is not None and model != found:
        raise ValueError(f"model: {checkpoint!r} holds a Mixer {found}; got --model {model!r}")
    input_shape = None if input_size is None else (input_size, input_size, 3)
    net = Mixer(found, weights=checkpoint, input_shape=input_shape, include_top=include_top)
    if output.endswith(".keras"):
        net.save(output)
    else:
        net.save_weights(output)
    return net


def add_parsers(subparsers):
    p = subparsers.add_parser("predict", help="classify image files (top-k labels)")
    p.add_argument("images", nargs="+", help="JPEG/PNG files")
    p.add_argument("--model", default="B/16", help="variant (B/16, ...) or a .keras file (default: B/16)")
    p.add_argument("--weights", default=None,
                   help="weights tag or file for a variant (default: 'imagenet' for a variant)")
    p.add_argument("--top", type=int, default=5, help="classes per image (default: 5)")
    p.add_argument("--labels", help="text file with one class name per line, for custom heads")
    p.set_defaults(run=_run_predict)

    p = subparsers.add_parser("convert", help="authors' .npz checkpoint -> .keras or .weights.h5")
    p.add_argument("checkpoint", help="authors' .npz file (e.g. Mixer-B_16.npz)")
    p.add_argument("-o", "--output", required=True, help="OUT.keras or OUT.weights.h5")
    p.add_argument("--model", help="expected variant (checked against the file; inferred if omitted)")
    p.add_argument("--input-size", type=int, help="image side; an integer multiple of the checkpoint's")
    p.add_argument("--no-top", dest="include_top", action="store_false", help="drop the head")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=_run_convert)


def _run_predict(args):
    weights = args.weights
    if weights is None and not args.model.endswith(".keras"):
        weights = "imagenet"
    names = None
    if args.labels:
        with open(args.labels, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    results = predict(args.images, args.model, weights, args.top, names)
    for path, top in zip(args.images, results):
        print(path)
        for rank, (label, score) in enumerate(top, 1):
            print(f"  {rank}. {label:<40} {score:.4f}")


def _run_convert(args):
    net = convert(args.checkpoint, args.output, args.model, args.input_size,
                  args.include_top, args.overwrite)
    print(f"wrote {args.output} ({net.name}, {net.count_params():,} parameters)")
