"""`evaluate(...)`: top-1 / top-5 of a saved model or a pretrained tag on a
dataset, with the paper's eval preprocessing (resize + centre crop)."""

import keras
import numpy as np

from keras_mixer import datasets
from keras_mixer.training import data as data_lib
from keras_mixer.training import strategy as strategy_lib

SPLITS = ("test", "train")


def evaluate(model, *, weights=None, dataset="default", data_dir=None, batch_size=128,
             split="test", strategy="default"):
    """{"top1", "top5", "images", "split", "dataset"} of `model` on `dataset`.

    model: a `.keras` file, a `keras.Model`, or a variant ("B/16") built with
    `weights` (a tag such as "imagenet", or a checkpoint file). The model's
    classes must match the dataset's, in the dataset's label order.
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}; got {split!r}")
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size: expected an int > 0; got {batch_size!r}")
    datasets.check_spec(dataset, data_dir)
    if isinstance(model, str):
        from keras_mixer.inference import load_model  # checks .keras path vs variant + weights

        if not model.endswith(".keras") and weights is None:
            raise ValueError(f"weights: evaluating variant {model!r} needs pretrained weights "
                             f"(a tag or a file); got None")
        with strategy_lib.get_strategy(strategy).scope():
            model = load_model(model, weights=weights)
    size = tuple(model.input_shape[1:3])
    classes = model.output_shape[-1]
    source = datasets.load_source(dataset, data_dir, image_size=size[0])
    if source.num_classes != classes:
        raise ValueError(f"dataset: {dataset!r} has {source.num_classes} classes; "
                         f"the model has {classes} outputs")
    top1 = keras.metrics.SparseTopKCategoricalAccuracy(1)
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(min(5, classes))
    count = 0
    for images, onehot in data_lib.eval_pipeline(source, size, batch_size, split):
        probs = model.predict_on_batch(images)
        labels = np.argmax(onehot, axis=-1)
        top1.update_state(labels, probs)
        top5.update_state(labels, probs)
        count += len(labels)
    return dict(top1=float(top1.result()), top5=float(top5.result()), images=count,
                split=split, dataset=dataset)
