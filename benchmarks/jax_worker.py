"""A child process on the JAX backend that times jitted calls when asked.

Keras picks its backend once per process, so JAX runs here while the parent
keeps TensorFlow. The child idles on stdin between requests: its calls take
their turn in the parent's interleaved rounds and never overlap them.
Started by `JaxWorker`; it runs as `python -m benchmarks.jax_worker`.
"""

import json
import os
import subprocess
import sys

import numpy as np

from . import harness


class JaxWorker:
    """Context manager; `gemm`, `model` and `flax` each set up one jitted
    function in the child and return a zero-argument callable for `interleaved`."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.jax_worker"], cwd=harness.ROOT,
            env=dict(os.environ, KERAS_BACKEND="jax"), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the child's loop ends at EOF
            self.proc.wait(timeout=60)

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

    def _setup(self, name, **request):
        """Sets up the child's jitted `name`; returns a callable timing one call of it."""
        reply = self.ask(cmd=name, **request)
        return (lambda: self.ask(cmd="run", fn=name)), reply

    def gemm(self, n):
        """float32 n^3 `jax.jit(jnp.matmul)`."""
        return self._setup("gemm", n=n)[0]

    def model(self, config, *, size, batch, weights=None):
        """`jax.jit(model.stateless_call)` of keras_mixer on a batch of random images."""
        return self._setup("model", config=config, size=size, batch=batch, weights=weights)[0]

    def flax(self, config, *, classes, weights):
        """The authors' Flax module on `model`'s checkpoint and images (set `model`
        up first); returns (timer, {max_logit_diff, logit_scale} against `model`)."""
        return self._setup("flax", config=config, classes=classes, weights=weights)


def _setup(request, state):
    import jax
    import jax.numpy as jnp

    cmd = request["cmd"]
    if cmd == "gemm":
        a = jnp.asarray(np.random.default_rng(0).standard_normal((request["n"],) * 2,
                                                                 dtype=np.float32))
        f = jax.jit(jnp.matmul)
        state["gemm"] = lambda: f(a, a).block_until_ready()
    elif cmd == "model":
        from keras_mixer.model import Mixer

        size = request["size"]
        model = Mixer(request["config"], weights=request["weights"], classifier_activation=None,
                      input_shape=(size, size, 3))
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        f = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        state["x"] = jnp.asarray(harness.images(request["batch"], size))
        state["model"] = lambda: f(tv, ntv, state["x"]).block_until_ready()
    elif cmd == "flax":
        from .flax_reference import authors_mixer, unflatten

        module = authors_mixer(request["config"], request["classes"])
        with np.load(request["weights"]) as npz:
            params = {"params": unflatten({k: jnp.asarray(npz[k]) for k in npz.files})}
        f, x = jax.jit(module.apply), state["x"] / 127.5 - 1.0  # the authors' input range
        state["flax"] = lambda: f(params, x).block_until_ready()
        ours, theirs = np.asarray(state["model"]()), np.asarray(state["flax"]())
        return {"max_logit_diff": float(np.abs(ours - theirs).max()),
                "logit_scale": float(np.abs(theirs).max())}
    else:
        raise ValueError(f"cmd: expected gemm, model, flax or run; got {cmd!r}")
    return {}


def serve():
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library prints go to stderr; stdout carries only replies
    import keras

    assert keras.backend.backend() == "jax", keras.backend.backend()
    state = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "run":
                reply = {"s": harness.seconds(state[request["fn"]])}
            else:
                reply = _setup(request, state)
        except Exception as err:  # report it and keep serving
            reply = {"error": f"{type(err).__name__}: {err}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve()
