"""An independent NumPy MLP-Mixer, written from the paper's equations and the
authors' Flax code, with parameters keyed exactly as the released `.npz` files.

Nothing here imports keras_mixer: tests compare the Keras model against it.
"""

import math

import numpy as np


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def mlp(x, params, prefix):
    h = gelu_tanh(x @ params[f"{prefix}/Dense_0/kernel"] + params[f"{prefix}/Dense_0/bias"])
    return h @ params[f"{prefix}/Dense_1/kernel"] + params[f"{prefix}/Dense_1/bias"]


def patchify(images, patch):
    """(N, H, W, 3) -> (N, S, P*P*3), tokens row-major over the patch grid."""
    n, h, w, c = images.shape
    x = images.reshape(n, h // patch, patch, w // patch, patch, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, (h // patch) * (w // patch), -1)


def stem(images_0_255, params):
    """Rescale to [-1, 1] and embed patches: (N, S, C)."""
    kernel = params["stem/kernel"]  # HWIO
    patch = kernel.shape[0]
    x = images_0_255.astype(np.float64) / 127.5 - 1.0
    return patchify(x, patch) @ kernel.reshape(-1, kernel.shape[-1]) + params["stem/bias"]


def token_mixing_step(x, params, block):
    """x + TokenMLP(LN(x)^T)^T: the first half of a Mixer block."""
    y = layer_norm(x, params[f"{block}/LayerNorm_0/scale"], params[f"{block}/LayerNorm_0/bias"])
    y = mlp(y.transpose(0, 2, 1), params, f"{block}/token_mixing").transpose(0, 2, 1)
    return x + y


def mixer_block(x, params, block):
    x = token_mixing_step(x, params, block)
    y = layer_norm(x, params[f"{block}/LayerNorm_1/scale"], params[f"{block}/LayerNorm_1/bias"])
    return x + mlp(y, params, f"{block}/channel_mixing")


def features(images_0_255, params):
    x = stem(images_0_255, params)
    i = 0
    while f"MixerBlock_{i}/LayerNorm_0/scale" in params:
        x = mixer_block(x, params, f"MixerBlock_{i}")
        i += 1
    return layer_norm(x, params["pre_head_layer_norm/scale"], params["pre_head_layer_norm/bias"])


def logits(images_0_255, params):
    pooled = features(images_0_255, params).mean(axis=1)  # pool AFTER the norm
    return pooled @ params["head/kernel"] + params["head/bias"]


def random_checkpoint(rng, blocks, patch, hidden, d_s, d_c, tokens, classes, dtype=np.float32):
    """Random parameters in the authors' flat key layout (non-trivial norms/biases)."""
    def w(*shape):
        return (rng.standard_normal(shape) / math.sqrt(shape[0])).astype(dtype)

    def b(n):
        return (0.1 * rng.standard_normal(n)).astype(dtype)

    p = {"stem/kernel": (rng.standard_normal((patch, patch, 3, hidden)) / math.sqrt(patch * patch * 3)).astype(dtype),
         "stem/bias": b(hidden)}
    for i in range(blocks):
        k = f"MixerBlock_{i}"
        for ln in ("LayerNorm_0", "LayerNorm_1"):
            p[f"{k}/{ln}/scale"] = (1 + 0.1 * rng.standard_normal(hidden)).astype(dtype)
            p[f"{k}/{ln}/bias"] = b(hidden)
        for name, d_in, d_h in (("token_mixing", tokens, d_s), ("channel_mixing", hidden, d_c)):
            p[f"{k}/{name}/Dense_0/kernel"] = w(d_in, d_h)
            p[f"{k}/{name}/Dense_0/bias"] = b(d_h)
            p[f"{k}/{name}/Dense_1/kernel"] = w(d_h, d_in)
            p[f"{k}/{name}/Dense_1/bias"] = b(d_in)
    p["pre_head_layer_norm/scale"] = (1 + 0.1 * rng.standard_normal(hidden)).astype(dtype)
    p["pre_head_layer_norm/bias"] = b(hidden)
    p["head/kernel"] = w(hidden, classes)
    p["head/bias"] = b(classes)
    return p
