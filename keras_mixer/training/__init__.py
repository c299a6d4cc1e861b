"""Training at scale: tf.distribute strategies, tf.data pipelines, the paper's
recipes, evaluation and keras-tuner search.

    from keras_mixer.training import get_strategy, train
    strategy = get_strategy("auto")   # TPU, multi-worker, several GPUs, or one device
    metrics = train()                 # the README's main job: embedded digits, runs/default

Nothing here is imported by `import keras_mixer`.
"""

from keras_mixer.training.evaluate import evaluate
from keras_mixer.training.recipes import DEFAULT_MODEL, RECIPES, get_recipe
from keras_mixer.training.strategy import STRATEGIES, get_strategy
from keras_mixer.training.train import train
