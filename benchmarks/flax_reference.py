"""The authors' Flax MlpMixer beside keras_mixer on JAX, timed.

Both jax.jit, one synthetic authors'-layout checkpoint, interleaved rounds
beside float32 GEMM probes (NumPy, JAX). Needs flax (in the `test` extra).

The Flax module is transcribed from google-research/vision_transformer,
vit_jax/models_mixer.py (Apache-2.0); tests/test_fidelity_flax.py checks
keras_mixer's logits against it.
"""

import os
import tempfile

import numpy as np

from . import harness
from .jax_worker import JaxWorker

FULL = dict(variant="B/16", size=224, batch=8, rounds=9, n=harness.GEMM_N)
QUICK = dict(variant="quick", size=32, batch=2, rounds=2, n=256)
CLASSES = 1000


def authors_mixer(config, num_classes):
    """The authors' Flax module, as published."""
    import flax.linen as nn
    import jax.numpy as jnp

    class MlpBlock(nn.Module):
        mlp_dim: int

        @nn.compact
        def __call__(self, x):
            y = nn.Dense(self.mlp_dim)(x)
            y = nn.gelu(y)
            return nn.Dense(x.shape[-1])(y)

    class MixerBlock(nn.Module):
        tokens_mlp_dim: int
        channels_mlp_dim: int

        @nn.compact
        def __call__(self, x):
            y = nn.LayerNorm()(x)
            y = jnp.swapaxes(y, 1, 2)
            y = MlpBlock(self.tokens_mlp_dim, name="token_mixing")(y)
            y = jnp.swapaxes(y, 1, 2)
            x = x + y
            y = nn.LayerNorm()(x)
            return x + MlpBlock(self.channels_mlp_dim, name="channel_mixing")(y)

    class MlpMixer(nn.Module):
        patch: int
        num_classes: int
        num_blocks: int
        hidden_dim: int
        tokens_mlp_dim: int
        channels_mlp_dim: int

        @nn.compact
        def __call__(self, inputs):
            p = (self.patch, self.patch)
            x = nn.Conv(self.hidden_dim, p, strides=p, name="stem")(inputs)
            n, h, w, c = x.shape
            x = jnp.reshape(x, (n, h * w, c))  # einops 'n h w c -> n (h w) c'
            for _ in range(self.num_blocks):
                x = MixerBlock(self.tokens_mlp_dim, self.channels_mlp_dim)(x)
            x = nn.LayerNorm(name="pre_head_layer_norm")(x)
            x = jnp.mean(x, axis=1)
            return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros,
                            name="head")(x)

    return MlpMixer(config["patch_size"], num_classes, config["num_blocks"],
                    config["hidden_dim"], config["tokens_mlp_dim"], config["channels_mlp_dim"])


def unflatten(arrays):
    """{'a/b/c': x} -> {'a': {'b': {'c': x}}}: the Flax params tree of a checkpoint."""
    tree = {}
    for key, value in arrays.items():
        *path, leaf = key.split("/")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def run(*, quick=False):
    from keras_mixer.weights import checkpoint_shapes

    s = QUICK if quick else FULL
    config, rng = harness.config_of(s["variant"]), np.random.default_rng(0)
    shapes = checkpoint_shapes(config, (s["size"] // config["patch_size"]) ** 2, CLASSES)
    # Fan-in-scaled kernels, non-trivial norms and a non-zero head: the logits are O(1).
    arrays = {k: (rng.standard_normal(v) / np.sqrt(np.prod(v[:-1])) if k.endswith("kernel")
                  else 1 + 0.1 * rng.standard_normal(v) if k.endswith("scale")
                  else 0.1 * rng.standard_normal(v)).astype(np.float32)
              for k, v in shapes.items()}
    a = np.random.default_rng(1).standard_normal((s["n"],) * 2, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp, JaxWorker() as jax:
        path = os.path.join(tmp, "checkpoint.npz")
        np.savez(path, **arrays)
        fns = {"keras_mixer jax": jax.model(config, size=s["size"], batch=s["batch"], weights=path)}
        fns["authors' flax"], check = jax.flax(config, classes=CLASSES, weights=path)
        fns.update({"gemm numpy_f32": lambda: a @ a, "gemm jax_xla_f32": jax.gemm(s["n"])})
        times = harness.interleaved(fns, rounds=s["rounds"])
    flops = harness.model_flops(config, s["size"], classes=CLASSES) * s["batch"]
    models, peak = harness.rates(times, flops=flops, batch=s["batch"], n=s["n"])
    return {"variant": s["variant"], "batch": s["batch"], "size": s["size"], "gemm_n": s["n"],
            "models": models, "peak_gflops": peak, **check,
            "keras_over_flax": harness.ratios(times["authors' flax"], times["keras_mixer jax"]),
            "gemm_gflops": {k: harness.summary([2 * s["n"] ** 3 / t / 1e9 for t in times[k]])
                            for k in times if k.startswith("gemm ")}}


def render(data):
    return "\n".join(
        [f"# The authors' Flax Mixer beside keras_mixer (JAX), {data['variant']} batch "
         f"{data['batch']} at {data['size']}\n",
         f"Both `jax.jit`, one synthetic authors'-layout checkpoint; max logit difference "
         f"{data['max_logit_diff']:.1e} (logits up to {data['logit_scale']:.2f}). GEMM peak "
         f"{harness.fmt(data['peak_gflops'], 0)} GFLOP/s (best float32 {data['gemm_n']}^3 probe "
         "of each round: " + ", ".join(f"{k[5:]} {harness.fmt(v, 0)}"
                                       for k, v in data["gemm_gflops"].items()) + ").\n"]
        + harness.table(["model", "images/s", "fraction of GEMM peak"],
                        [[k, harness.fmt(v["images_s"], 2), harness.fmt(v["peak_fraction"], 2)]
                         for k, v in data["models"].items()])
        + [f"\nkeras_mixer / authors' speed: {harness.fmt(data['keras_over_flax'], 3)}.",
           harness.footer(data)])
