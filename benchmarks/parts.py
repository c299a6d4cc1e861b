"""Where the block time goes under XLA: GEMMs, MLPs, whole blocks.

The blocks' token and channel GEMMs alone, the MLPs with their
LayerNorm/bias/GELU/residual, and whole blocks, chained over all blocks,
each as a fraction of the same round's GEMM peak.
"""

import numpy as np

from . import harness

FULL = dict(variant="B/16", size=224, batch=8, rounds=9, n=harness.GEMM_N)
QUICK = dict(variant="quick", size=32, batch=2, rounds=2, n=256)
PARTS = ("token GEMMs", "channel GEMMs", "token MLP", "channel MLP", "block")


def part_fns(config, *, size, batch):
    """{part: (fn, flops)} for PARTS, XLA functions over the same library
    MixerBlocks (random init) and token tensor (batch, S, C):
      token GEMMs    transpose, the two token-mixing matmuls, transpose back
      channel GEMMs  the two channel-mixing matmuls
      token MLP      x + token_mixing(LayerNorm_0(x)^T)^T: the library's layers
      channel MLP    x + channel_mixing(LayerNorm_1(x))
      block          MixerBlock.call, the model's blocks without stem and head
    A GEMM part leaves out LayerNorm, bias, GELU and the residual add, so
    (MLP - GEMMs) is what those cost. Each fn returns a scalar (no output copy).
    """
    import tensorflow as tf
    from keras import ops

    from keras_mixer.layers import MixerBlock

    s, c = (size // config["patch_size"]) ** 2, config["hidden_dim"]
    d_s, d_c = config["tokens_mlp_dim"], config["channels_mlp_dim"]
    blocks = [MixerBlock(s, c, d_s, d_c) for _ in range(config["num_blocks"])]
    for block in blocks:
        block.build((batch, s, c))
    x = tf.constant(np.random.default_rng(0).standard_normal((batch, s, c), dtype=np.float32))

    def gemms(mlp, v):
        return tf.matmul(tf.matmul(v, mlp.dense_0.kernel), mlp.dense_1.kernel)

    steps = {
        "token GEMMs": lambda b, v: tf.transpose(
            gemms(b.token_mixing, tf.transpose(v, (0, 2, 1))), (0, 2, 1)),
        "channel GEMMs": lambda b, v: gemms(b.channel_mixing, v),
        "token MLP": lambda b, v: v + ops.transpose(
            b.token_mixing(ops.transpose(b.layer_norm_0(v), (0, 2, 1))), (0, 2, 1)),
        "channel MLP": lambda b, v: v + b.channel_mixing(b.layer_norm_1(v)),
        "block": lambda b, v: b(v, training=False),
    }
    token = 2 * 2 * batch * c * s * d_s * len(blocks)
    channel = 2 * 2 * batch * s * c * d_c * len(blocks)
    flops = {"token GEMMs": token, "token MLP": token, "channel GEMMs": channel,
             "channel MLP": channel, "block": token + channel}
    def chained(step):
        def chain(v):
            for block in blocks:
                v = step(block, v)
            return tf.reduce_sum(v)

        fn = tf.function(chain, jit_compile=True)
        return lambda: fn(x).numpy()

    return {part: (chained(steps[part]), flops[part]) for part in PARTS}


def run(*, quick=False):
    s = QUICK if quick else FULL
    config = harness.config_of(s["variant"])
    parts = part_fns(config, size=s["size"], batch=s["batch"])
    times = harness.interleaved({**{k: f for k, (f, _) in parts.items()},
                                 **harness.gemm_probes(s["n"])}, rounds=s["rounds"])
    peaks, block = harness.round_peaks(times, n=s["n"]), times["block"]
    rows = {part: {"gflop": flops / 1e9,
                   "ms": harness.summary([t * 1e3 for t in times[part]]),
                   "gflops": harness.summary([flops / t / 1e9 for t in times[part]]),
                   "peak_fraction": harness.summary([flops / t / 1e9 / p
                                                     for t, p in zip(times[part], peaks)]),
                   "share_of_block": harness.ratios(times[part], block)}
            for part, (_, flops) in parts.items()}
    # What the block spends beyond its GEMMs (token GEMMs include their transposes).
    rest = [b - t - c for b, t, c in zip(block, times["token GEMMs"], times["channel GEMMs"])]
    return {"variant": s["variant"], "batch": s["batch"], "blocks": config["num_blocks"],
            "parts": rows, "peak_gflops": harness.summary(peaks),
            "non_gemm_ms": harness.summary([t * 1e3 for t in rest]),
            "non_gemm_share": harness.summary([t / b for t, b in zip(rest, block)])}


def render(data):
    return "\n".join(
        [f"# Where the block time goes: {data['variant']} batch {data['batch']}, XLA, "
         f"{data['blocks']} blocks chained\n",
         "GEMMs = the matmuls alone (token: with its two transposes); MLP = the library's "
         "LayerNorm, Dense+bias, GELU and residual add around them; block = MixerBlock. "
         f"GEMM peak {harness.fmt(data['peak_gflops'], 0)} GFLOP/s; median [min-max] over "
         "interleaved rounds.\n"]
        + harness.table(["part", "GFLOP", "ms", "GFLOP/s", "fraction of peak",
                         "share of block time"],
                        [[p, f"{v['gflop']:.1f}", harness.fmt(v["ms"]), harness.fmt(v["gflops"]),
                          f"{v['peak_fraction']['median']:.0%}",
                          f"{v['share_of_block']['median']:.0%}"]
                         for p, v in data["parts"].items()])
        + [f"\nBlock time outside the GEMMs (LayerNorm, bias, GELU, residual): "
           f"{harness.fmt(data['non_gemm_ms'])} ms, {data['non_gemm_share']['median']:.0%} "
           "of the block.", harness.footer(data)])
