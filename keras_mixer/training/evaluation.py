"""`evaluate(...)`: top-1 / top-5 of a saved model or a pretrained tag on a
dataset, with the paper's eval preprocessing (resize + centre crop)."""

import keras
import numpy as np

from keras_mixer import datasets
from keras_mixer.preprocessing import EvalTransform
from keras_mixer.training import data as data_lib
from keras_mixer.training import strategy as strategy_lib

SPLITS = ("test", "train")
# The default of `weights`: a variant is evaluated only with weights named on
# purpose, None (random initialisation, `--weights none`) included.
REQUIRED = "required"


def evaluate(model, *, weights=REQUIRED, dataset="default", data_dir=None, batch_size=128,
             split="test", strategy="default"):
    """{"top1", "top5", "images", "split", "dataset"} of `model` on `dataset`.

    model: a `.keras` file, a `keras.Model`, or a variant ("B/16") built with
    `weights`: a tag such as "imagenet", a checkpoint file, or None for random
    initialisation (a variant without `weights` is refused). The model's
    classes must match the dataset's, in the dataset's label order. Every
    argument and the dataset are checked before any checkpoint is downloaded.
    """
    from keras_mixer.inference import load_model  # checks .keras path vs variant + weights
    from keras_mixer.model import VARIANTS

    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}; got {split!r}")
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size: expected an int > 0; got {batch_size!r}")
    datasets.check_spec(dataset, data_dir)
    strategy_lib.check_strategy(strategy)
    variant = isinstance(model, dict) or (isinstance(model, str) and model in VARIANTS)
    if variant:
        size = _variant_size(model, weights)
    else:
        model = load_model(model, weights=None if weights == REQUIRED else weights)
        size = model.input_shape[1]
    # The data is read before any download: a missing tfds directory fails in seconds.
    source = datasets.load_source(dataset, data_dir, image_size=size)
    if variant:
        with strategy_lib.get_strategy(strategy).scope():
            model = load_model(model, weights=weights)
    classes = model.output_shape[-1]
    if source.num_classes != classes:
        raise ValueError(f"dataset: {dataset!r} has {source.num_classes} classes; "
                         f"the model has {classes} outputs")
    images = source.num_test if split == "test" else source.num_train
    print(f"evaluating {model.name} ({model.count_params():,} parameters) on {dataset}, "
          f"{split} split: {images:,} images")
    top1 = keras.metrics.SparseTopKCategoricalAccuracy(1)
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(min(5, classes))
    count = 0
    transform = EvalTransform.of(model)  # the checkpoint's own resize, crop and interpolation
    for batch, onehot in data_lib.eval_pipeline(source, transform, batch_size, split):
        probs = model.predict_on_batch(batch)
        labels = np.argmax(onehot, axis=-1)
        top1.update_state(labels, probs)
        top5.update_state(labels, probs)
        count += len(labels)
    return dict(top1=float(top1.result()), top5=float(top5.result()), images=count,
                split=split, dataset=dataset)


def _variant_size(model, weights):
    """The input size a variant is built at with `weights`, found without a download."""
    from keras_mixer import weights as weights_lib
    from keras_mixer.model import resolve_variant

    resolve_variant(model)  # raises for a bad config dict
    if weights == REQUIRED:
        raise ValueError(f"weights: evaluating variant {model!r} needs weights named: a tag "
                         f"(e.g. 'imagenet'), a checkpoint file, or None for random "
                         f"initialisation (--weights none); got no weights")
    resolution = weights_lib.resolve_weights(weights, model).resolution
    return resolution[0] if resolution else weights_lib.RESOLUTION
