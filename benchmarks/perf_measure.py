"""Measuring primitives for `benchmarks/perf.py`: FLOP counts, interleaved
timing rounds, the GEMM probes, the JAX worker process and the checkpoint
conversion child process.

Run as a script it is one of two helper processes (the parent starts them):
    python benchmarks/perf_measure.py jax-worker       # JSON commands on stdin
    python benchmarks/perf_measure.py convert SPEC.json # one conversion, JSON out
"""

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


# --- FLOPs from the architecture ------------------------------------------


def model_macs(config, size, classes=1000):
    """Multiply-accumulates of one image through a Mixer (paper Table 1 GMACs).

    stem: S patches x (P*P*3 -> C); per block: token MLP on C columns
    (S -> D_S -> S) and channel MLP on S rows (C -> D_C -> C); head C -> classes.
    LayerNorm, GELU, adds and the mean are O(S*C) and left out, as in the paper.
    """
    p, c = config["patch_size"], config["hidden_dim"]
    s = (size // p) ** 2
    block = 2 * c * s * config["tokens_mlp_dim"] + 2 * s * c * config["channels_mlp_dim"]
    return s * p * p * 3 * c + config["num_blocks"] * block + c * classes


def model_flops(config, size, classes=1000):
    return 2 * model_macs(config, size, classes)


# --- timing ---------------------------------------------------------------


def stats(values):
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "min": float(values.min()),
            "max": float(values.max()), "n": int(values.size)}


def timed(fn, calls):
    """Seconds per call of `fn` over `calls` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def calls_for(seconds_per_call, target_s):
    """How many calls fill about `target_s` (at least one)."""
    return max(1, int(round(target_s / max(seconds_per_call, 1e-6))))


def interleaved(fns, rounds, target_s, targets=None):
    """Times every fn of {name: fn} in each round, rotating the order.

    One warm-up call each (compiles, caches) is timed separately as `first_s`.
    Rotating the order (ABC, BCA, CAB, ...) spreads load spikes from other
    processes over all of them, so their ratios are fair. `targets` overrides
    `target_s` per name. Returns {name: {"s": [per-call seconds per round],
    "first_s": s, "calls": n}} and the 1-min load average at each round.
    """
    targets = {name: (targets or {}).get(name, target_s) for name in fns}
    first = {name: timed(fn, 1) for name, fn in fns.items()}
    calls = {name: calls_for(timed(fn, 1), targets[name]) for name, fn in fns.items()}
    names, out, loads = list(fns), {n: [] for n in fns}, []
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name].append(timed(fns[name], calls[name]))
    return {name: {"s": out[name], "first_s": first[name], "calls": calls[name]}
            for name in names}, loads


# --- GEMM probes ----------------------------------------------------------


def gemm_fns(n):
    """float32 n x n x n matmul in NumPy (OpenBLAS), TF eager (oneDNN) and TF+XLA."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    ta, tb = tf.constant(a), tf.constant(b)
    xla = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=True)
    return {
        "numpy_f32": lambda: a @ b,
        "tf_f32": lambda: tf.matmul(ta, tb).numpy(),
        "tf_xla_f32": lambda: xla(ta, tb).numpy(),
    }


def tflite_gemm_fns(n, threads, workdir):
    """n x n x n matmul as one TFLite FULLY_CONNECTED, float32 and full int8."""
    import keras

    from ai_edge_litert.interpreter import Interpreter
    from keras_mixer.export.tflite import convert

    inputs = keras.Input((n, n))
    model = keras.Model(inputs, keras.layers.Dense(n, use_bias=False)(inputs))
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((10, n, n)).astype(np.float32)
    fns = {}
    for mode, quantize in (("tflite_f32", "none"), ("tflite_int8", "int8")):
        path = os.path.join(workdir, f"gemm_{mode}.tflite")
        with open(path, "wb") as f:
            f.write(convert(model, quantize=quantize, images=calib))
        interp = Interpreter(model_path=path, num_threads=threads)
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
        interp.set_tensor(detail["index"], calib[:1].astype(detail["dtype"]))
        fns[f"{mode}_{threads}t"] = interp.invoke
    return fns


# --- a transpose-free token MLP, for comparison ---------------------------


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


# --- where the blocks' time goes -------------------------------------------


BLOCK_PARTS = ("token GEMMs", "channel GEMMs", "token MLP", "channel MLP", "block")


def block_part_fns(config, size, batch):
    """XLA functions that run one part of every Mixer block, chained over the blocks.

    Returns {part: (fn, flops)} for the parts in BLOCK_PARTS, all on the same
    library MixerBlocks (random init) and token tensor (batch, S, C):
      token GEMMs    transpose, the two token-mixing matmuls, transpose back
      channel GEMMs  the two channel-mixing matmuls
      token MLP      x + token_mixing(LayerNorm_0(x)^T)^T: the library's layers
      channel MLP    x + channel_mixing(LayerNorm_1(x))
      block          MixerBlock.call, the model's blocks without stem and head
    A GEMM-only part leaves out LayerNorm, bias, GELU and the residual add, so
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
    token_flops = 2 * 2 * batch * c * s * d_s * len(blocks)
    channel_flops = 2 * 2 * batch * s * c * d_c * len(blocks)
    flops = {"token GEMMs": token_flops, "token MLP": token_flops,
             "channel GEMMs": channel_flops, "channel MLP": channel_flops,
             "block": token_flops + channel_flops}
    out = {}
    for part in BLOCK_PARTS:
        def chain(v, step=steps[part]):
            for block in blocks:
                v = step(block, v)
            return tf.reduce_sum(v)

        fn = tf.function(chain, jit_compile=True)
        out[part] = (lambda f=fn: f(x).numpy(), flops[part])
    return out


# --- the JAX backend, in its own process -----------------------------------


class JaxWorker:
    """A child process with KERAS_BACKEND=jax that times jitted calls on demand.

    It idles on stdin between requests, so its rounds interleave with the
    TensorFlow ones in this process without running at the same time.
    """

    def __init__(self):
        env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=_pythonpath())
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "perf_measure.py"), "jax-worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"JAX worker died on {request}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"JAX worker: {reply['error']}")
        return reply

    def timer(self, fn):
        """A fn for `interleaved`: one call of the worker's jitted `fn` ("model", "gemm")."""
        return lambda: self.ask(cmd="run", fn=fn, calls=1)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def _pythonpath():
    root = os.path.dirname(HERE)
    return os.pathsep.join([root, HERE, os.environ.get("PYTHONPATH", "")])


def jax_worker():
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library prints go to stderr; stdout carries only replies
    import jax
    import jax.numpy as jnp
    import keras

    from keras_mixer.model import Mixer

    assert keras.backend.backend() == "jax"
    state = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "quit":
                break
            reply = _jax_handle(request, state, jax, jnp, Mixer)
        except Exception as err:  # report, keep serving
            reply = {"error": f"{type(err).__name__}: {err}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _jax_handle(request, state, jax, jnp, Mixer):
    cmd = request["cmd"]
    if cmd == "gemm":
        n = request["n"]
        a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))
        f = jax.jit(jnp.matmul)
        state["gemm"] = lambda: f(a, a).block_until_ready()
    elif cmd == "load":
        size, batch = request["size"], request["batch"]
        model = Mixer(request["variant"], input_shape=(size, size, 3),
                      classifier_activation=None)
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        f = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3))
                        .astype(np.float32))
        state["model"] = lambda: f(tv, ntv, x).block_until_ready()
    elif cmd != "run":
        raise ValueError(f"unknown command {cmd!r}")
    if cmd != "run":
        return {"first_s": timed(state["gemm" if cmd == "gemm" else "model"], 1)}
    return {"s": timed(state[request["fn"]], request["calls"])}


# --- checkpoint conversion, in a fresh process ----------------------------


def conversion_child(spec):
    """Times `Mixer(variant, weights=path)` (or a random build) in a fresh process.

    Peak memory is the process's VmHWM, which sees NumPy and TensorFlow's C++
    buffers alike (ru_maxrss would not do: Linux carries the parent's peak
    over fork and exec); the baseline is taken after the imports.
    """
    import keras  # noqa: F401  (import cost stays out of the timing)

    from keras_mixer.model import Mixer

    base = peak_rss_mib()
    start = time.perf_counter()
    model = Mixer(spec["variant"], weights=spec.get("weights"), classifier_activation=None)
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    return {"seconds": seconds, "base_rss_mib": base, "peak_rss_mib": peak,
            "params": int(model.count_params())}


def peak_rss_mib():
    """This process's peak resident memory (VmHWM), in MiB."""
    try:
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):  # not Linux: ru_maxrss is the next best thing
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def run_conversion_child(spec):
    env = dict(os.environ, PYTHONPATH=_pythonpath())
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, "perf_measure.py"), "convert", json.dumps(spec)],
        capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"conversion child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if sys.argv[1] == "jax-worker":
        jax_worker()
    elif sys.argv[1] == "convert":
        print(json.dumps(conversion_child(json.loads(sys.argv[2]))))
