"""keras_mixer's benchmark harness: `python -m benchmarks --list` names the sections."""
