"""Which `tf.distribute` strategy to train under; nothing home-made.

    strategy = get_strategy("auto")
    with strategy.scope():
        model = keras_mixer.MixerS16(classes=10)
        model.compile(...)                       # optimizer and metrics made here too
    model.fit(dataset.batch(per_replica * strategy.num_replicas_in_sync), ...)

With several workers (MultiWorkerMirroredStrategy) model.fit fails in Keras
<= 3.15.1 (keras-team/keras#20585); train() then uses multiworker.py instead.
"""

import json
import os

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
_CREATED = {}  # strategies that must exist once per process


def check_strategy(name):
    if name not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {list(STRATEGIES)}; got {name!r}")


def get_strategy(name="auto", tpu=None):
    """A `tf.distribute.Strategy` by name.

    "auto" picks TPUStrategy when a TPU resolves, MultiWorkerMirroredStrategy
    when TF_CONFIG names a cluster of several tasks, MirroredStrategy when
    there are several GPUs, else the default (one-device) strategy.
    "mirrored" mirrors over all local GPUs, or over the logical CPU devices
    when there is no GPU. `tpu` is the TPU name or address for TPUClusterResolver.
    """
    check_strategy(name)
    import tensorflow as tf

    if name == "auto":
        name = _auto(tpu)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "multiworker":
        # One per process: a second instance starts its collective keys from the
        # same base as the first, and their collectives collide.
        if "multiworker" not in _CREATED:
            _CREATED["multiworker"] = tf.distribute.MultiWorkerMirroredStrategy()
        return _CREATED["multiworker"]
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def _auto(tpu):
    import tensorflow as tf

    if tpu or os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0"):
        try:
            tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu).cluster_spec()
            return "tpu"
        except (ValueError, RuntimeError):  # no TPU resolves: fall through
            pass
    if cluster_size() > 1:
        return "multiworker"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def is_multiworker(strategy):
    """True for MultiWorkerMirroredStrategy over several workers, where training
    takes TF's custom-loop path (multiworker.py) instead of keras.Model.fit."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and cluster_size() > 1


def cluster_size():
    """Number of tasks TF_CONFIG names (0 when unset)."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return sum(len(tasks) for kind, tasks in cluster.items() if kind in ("chief", "worker"))


def is_chief():
    """True on the one task that writes the outputs (always true outside a cluster)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    first_worker = task.get("type") == "worker" and task.get("index", 0) == 0
    return first_worker and "chief" not in config.get("cluster", {})


def describe(strategy):
    """'MirroredStrategy, 2 replicas': for the line printed before training."""
    replicas = strategy.num_replicas_in_sync
    return f"{type(strategy).__name__.lstrip('_')}, {replicas} replica{'s' * (replicas > 1)}"


def global_batch_size(batch_size, replicas, per_replica=False):
    """The global batch: `batch_size` is global, or per replica when `per_replica`."""
    if per_replica:
        return batch_size * replicas
    if batch_size % replicas:
        raise ValueError(
            f"batch_size: the global batch must be divisible by the {replicas} replicas; "
            f"got {batch_size} (try {max(replicas, batch_size // replicas * replicas)})"
        )
    return batch_size
