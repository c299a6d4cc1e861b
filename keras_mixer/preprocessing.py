"""The one input contract: RGB images with values 0-255.

Rescaling to [-1, 1] is the model's first layer, so `preprocess_input` is the
identity (as in keras.applications.convnext). `eval_resize_crop` is the paper's
evaluation transform, shared by prediction, evaluation and the exported
SavedModel's image-bytes signature.
"""

# TensorFlow is imported inside the functions: the model itself needs only
# keras.ops, so `import keras_mixer` stays light on the JAX and PyTorch backends.

# Resize so that the crop is 87.5% of the shorter side (256 -> 224), then crop.
CROP_FRACTION = 0.875


def preprocess_input(x, data_format=None):
    """Identity: Mixer models take RGB 0-255 and rescale themselves."""
    return x


def eval_resize_crop(image, size=(224, 224), crop_fraction=CROP_FRACTION):
    """Paper's eval transform on one (H, W, 3) image: resize the shorter side to
    size / crop_fraction (bicubic), centre-crop `size`. Returns float32 0-255."""
    import tensorflow as tf

    height, width = size
    image = tf.convert_to_tensor(image)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_max(tf.constant([height, width], tf.float32) / crop_fraction / shape)
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    image = tf.image.resize(tf.cast(image, tf.float32), new, method="bicubic")
    top = (new[0] - height) // 2
    left = (new[1] - width) // 2
    image = image[top:top + height, left:left + width, :]
    image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.ensure_shape(image, (height, width, 3))


def load_image(path, size=(224, 224)):
    """Reads a JPEG/PNG/GIF/BMP file into the model's contract (float32 0-255)."""
    import tensorflow as tf

    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return eval_resize_crop(image, size)
