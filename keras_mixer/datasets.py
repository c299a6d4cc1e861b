"""The embedded default dataset: scikit-learn's bundled handwritten digits.

1,797 8x8 grey images of 10 digits ship inside the scikit-learn wheel, so a
fresh machine with no network can train, evaluate, quantize and export. They
are up-sampled (bilinear) to RGB 0-255 images, the models' input contract.
"""

import numpy as np

DIGITS_CLASSES = 10
DIGITS_LABELS = tuple(str(d) for d in range(DIGITS_CLASSES))
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # fixed, so every command sees the same test split


def embedded_digits(size=32):
    """((x_train, y_train), (x_test, y_test)): uint8 (N, size, size, 3), int32 labels.

    A fixed stratified split: 1,437 training and 360 test images.
    """
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not (isinstance(size, int) and size >= 8):
        raise ValueError(f"size: expected an int >= 8; got {size!r}")
    images, labels = load_digits(return_X_y=True)
    images = images.reshape(-1, 8, 8, 1).astype(np.float32) * (255.0 / 16.0)
    images = tf.image.resize(images, (size, size), method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(images), 0, 255).astype(np.uint8), 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels.astype(np.int32), test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED, stratify=labels,
    )
    return (x_train, y_train), (x_test, y_test)
