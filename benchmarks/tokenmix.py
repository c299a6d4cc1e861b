"""Token mixing: transposes against a transpose-free einsum.

The library's transpose-Dense-transpose and an einsum form with the same
weights, eager, graph and XLA, interleaved.
"""

from unittest import mock

import numpy as np

from . import harness

FULL = dict(variant="B/16", size=224, batch=8, rounds=9)
QUICK = dict(variant="quick", size=32, batch=2, rounds=2)


def einsum_block_class():
    """A MixerBlock whose token MLP contracts the token axis in place.

    h[n] = W0^T y[n] (D_S x C) and out[n] = W1^T gelu(h[n]) (S x C): the same
    weights and math as transposing, mixing and transposing back, with no
    activation transpose for the compiler to copy or fuse.
    """
    from keras import ops

    from keras_mixer import layers

    class EinsumMixerBlock(layers.MixerBlock):
        def call(self, x, training=False):
            mlp = self.token_mixing
            y = self.layer_norm_0(x)
            h = ops.einsum("sd,nsc->ndc", mlp.dense_0.kernel, y)
            h = layers.gelu(h + ops.expand_dims(mlp.dense_0.bias, -1), mlp.gelu_form)
            y = ops.einsum("ds,ndc->nsc", mlp.dense_1.kernel, h)
            x = x + self._drop_path(y + ops.expand_dims(mlp.dense_1.bias, -1), training)
            return x + self._drop_path(self.channel_mixing(self.layer_norm_1(x)), training)

    return EinsumMixerBlock


def run(*, quick=False):
    import tensorflow as tf

    import keras_mixer.model

    s = QUICK if quick else FULL
    base = harness.build(s["variant"], s["size"])
    with mock.patch.object(keras_mixer.model, "MixerBlock", einsum_block_class()):
        alt = harness.build(s["variant"], s["size"])
    rng = np.random.default_rng(0)  # a non-zero head, so the logits differ if the math does
    alt.set_weights([0.05 * rng.standard_normal(w.shape).astype(np.float32)
                     for w in base.get_weights()])
    base.set_weights(alt.get_weights())
    x = tf.constant(harness.images(s["batch"], s["size"]))
    fns, outputs = {}, {}
    for name, model in (("transpose", base), ("einsum", alt)):
        graph = tf.function(lambda t, m=model: m(t, training=False))
        xla = tf.function(lambda t, m=model: m(t, training=False), jit_compile=True)
        fns.update({f"{name} eager": lambda m=model: m(x, training=False).numpy(),
                    f"{name} graph": lambda f=graph: f(x).numpy(),
                    f"{name} xla": lambda f=xla: f(x).numpy()})
        outputs[name] = fns[f"{name} xla"]()
    times = harness.interleaved(fns, rounds=s["rounds"])
    return {"variant": s["variant"], "batch": s["batch"],
            "einsum_speedup": {m: harness.ratios(times[f"transpose {m}"], times[f"einsum {m}"])
                               for m in ("eager", "graph", "xla")},
            "images_s": {k: harness.summary([s["batch"] / t for t in ts])
                         for k, ts in times.items()},
            "max_logit_diff": float(np.abs(outputs["transpose"] - outputs["einsum"]).max()),
            "logit_scale": float(np.abs(outputs["transpose"]).max())}


def render(data):
    return "\n".join(
        [f"# Token mixing: transposes vs a transpose-free einsum, {data['variant']} batch "
         f"{data['batch']}\n",
         f"Same weights; max logit difference {data['max_logit_diff']:.1e} (logits up to "
         f"{data['logit_scale']:.2f}). images/s, median [min-max] over interleaved rounds.\n"]
        + harness.table(["mode", "transpose (library)", "einsum", "einsum speed-up"],
                        [[m, harness.fmt(data["images_s"][f"transpose {m}"], 2),
                          harness.fmt(data["images_s"][f"einsum {m}"], 2), harness.fmt(r, 2)]
                         for m, r in data["einsum_speedup"].items()])
        + [harness.footer(data)])
