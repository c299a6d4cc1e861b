"""Precision: the one vocabulary for compute precision across training, export
and the benchmarks (`--precision float32|bfloat16|float16`).

Each value is a mixed-precision compute: float32 weights (and outputs), the
layers' matmuls and activations in the named type; `keras_policy` is the Keras
dtype policy that gives it. Which commands take which: `train` all three (under
float16 Keras scales the loss), `export saved-model` float32 and bfloat16.
Imports nothing heavy, so `--help` lists the choices without starting Keras.
"""

import enum


class Precision(enum.Enum):
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"  # pays on AVX512_BF16/AMX CPUs, recent GPUs, TPUs
    FLOAT16 = "float16"  # GPUs; training scales the loss

    @property
    def keras_policy(self):
        return "float32" if self is Precision.FLOAT32 else f"mixed_{self.value}"

    @classmethod
    def parse(cls, value, *, allowed=None, arg="precision"):
        """`value` (a Precision or its name) as a Precision; raises a ValueError
        naming `arg`, the value and what is allowed unless it is in `allowed`
        (default: every precision)."""
        allowed = tuple(cls) if allowed is None else tuple(allowed)
        found = value if isinstance(value, cls) else next(
            (p for p in cls if p.value == value), None)
        if found not in allowed:
            raise ValueError(f"{arg}: expected one of {[p.value for p in allowed]}; got {value!r}")
        return found


# The choices of each command, by name.
TRAIN = tuple(p.value for p in Precision)
SERVER_EXPORT = (Precision.FLOAT32.value, Precision.BFLOAT16.value)
