"""Training and evaluation pipelines over `keras_mixer.datasets` sources.

Training images get an inception crop (+ flip, RandAugment, mixup per recipe);
evaluation images the paper's resize + centre crop
(`keras_mixer.preprocessing.eval_resize_crop`). Images stay RGB 0-255: the
model rescales them itself.
"""

SHUFFLE_BUFFER = 10_000  # for streamed sources; in-memory ones shuffle everything


def train_pipeline(source, recipe, global_batch, seed=0):
    """Shuffled, augmented, batched (images float32 0-255, one-hot labels)."""
    import keras
    import tensorflow as tf

    size = (recipe["image_size"],) * 2
    buffer = SHUFFLE_BUFFER if source.streamed else max(source.num_train, 1)
    data = source.train.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    data = data.map(lambda x, y: (_inception_crop(x, size, recipe, seed), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    # Fixed shapes for XLA and TPUs; at most one batch per epoch is dropped.
    data = data.batch(global_batch, drop_remainder=True)
    if recipe["randaugment"]:
        ops, magnitude = recipe["randaugment"]
        augment = keras.layers.RandAugment(value_range=(0, 255), num_ops=ops,
                                           factor=magnitude / 30, seed=seed, dtype="float32")
        data = data.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    data = data.map(lambda x, y: (x, tf.one_hot(y, source.num_classes)))
    if recipe["mixup"]:
        # float32 whatever the mixed-precision policy: the model casts its inputs itself.
        mixup = keras.layers.MixUp(alpha=recipe["mixup"], seed=seed, dtype="float32")

        def mix(x, y):
            out = mixup({"images": x, "labels": y}, training=True)
            return out["images"], out["labels"]

        data = data.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    if recipe["randaugment"] or recipe["mixup"]:
        # Their float arithmetic can overshoot 255 by a rounding error: keep the contract exact.
        data = data.map(lambda x, y: (tf.clip_by_value(x, 0.0, 255.0), y))
    return _finish(data, source)


def eval_pipeline(source, transform, batch, split="test"):
    """The checkpoint's resize + centre crop, batched (images float32, one-hot labels).

    transform: an `EvalTransform` (`EvalTransform.of(model)`), or a size for the paper's."""
    import tensorflow as tf

    from keras_mixer.preprocessing import EvalTransform

    transform = EvalTransform.coerce(transform)
    data = source.test if split == "test" else source.train
    data = data.map(lambda x, y: (transform(x), tf.one_hot(y, source.num_classes)),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return _finish(data.batch(batch), source)


def _finish(data, source):
    import tensorflow as tf

    options = tf.data.Options()
    # Multi-worker: tfds files are split between workers; in-memory data and
    # file lists have no files to split, so each worker keeps its share of elements.
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.AUTO if source.streamed else policy.DATA
    return data.with_options(options).prefetch(tf.data.AUTOTUNE)


def _inception_crop(image, size, recipe, seed):
    """A random crop of `crop_area` of the image, aspect 3/4-4/3, resized; optional flip."""
    import tensorflow as tf

    begin, crop, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([0, 0, 4]), min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=tuple(recipe["crop_area"]),
        max_attempts=10, use_image_if_no_bounding_boxes=True,
    )
    image = tf.image.resize(tf.slice(image, begin, crop), size, method="bilinear")
    if recipe["flip"]:
        image = tf.image.random_flip_left_right(image)
    return tf.ensure_shape(tf.clip_by_value(image, 0.0, 255.0), (*size, 3))
