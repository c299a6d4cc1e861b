"""Training at scale: tf.distribute strategies, tf.data pipelines, the paper's
recipes, evaluation and keras-tuner search (needs TensorFlow).

    from keras_mixer.training import get_strategy, train
    strategy = get_strategy("auto")   # TPU, multi-worker, several GPUs, or one device
    metrics = train()                 # the README's main job: embedded digits, runs/default
    model = load_run("runs/default")  # any run's model, with its best epoch's weights

Nothing here is imported by `import keras_mixer`.
"""

from keras_mixer import _lazy

_EXPORTS = {
    "evaluate": ".evaluation",
    "DEFAULT_MODEL": ".recipes",
    "RECIPES": ".recipes",
    "get_recipe": ".recipes",
    "STRATEGIES": ".strategy",
    "get_strategy": ".strategy",
    "load_run": ".outputs",
    "train": ".trainer",
    "tune": ".tuning",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)
