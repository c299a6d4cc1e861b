"""Learning-rate schedule of the recipes: linear warm-up, then decay to 0."""

import math

import keras

DECAYS = ("cosine", "linear", "constant")


@keras.saving.register_keras_serializable(package="keras_mixer")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """0 -> `peak` linearly over `warmup_steps`, then cosine or linear decay to 0
    at `total_steps` (paper: linear for pre-training, cosine for fine-tuning),
    or constant."""

    def __init__(self, peak, warmup_steps, total_steps, decay="cosine"):
        if decay not in DECAYS:
            raise ValueError(f"schedule: expected one of {list(DECAYS)}; got {decay!r}")
        self.peak, self.warmup_steps, self.total_steps, self.decay = peak, warmup_steps, total_steps, decay

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = step / max(self.warmup_steps, 1)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = keras.ops.clip((step - self.warmup_steps) / decay_steps, 0, 1)
        if self.decay == "cosine":
            after = 0.5 * (1 + keras.ops.cos(math.pi * progress))
        elif self.decay == "linear":
            after = 1 - progress
        else:
            after = keras.ops.ones_like(progress)
        return self.peak * keras.ops.where(step < self.warmup_steps, warm, after)

    def get_config(self):
        return dict(peak=self.peak, warmup_steps=self.warmup_steps, total_steps=self.total_steps,
                    decay=self.decay)
