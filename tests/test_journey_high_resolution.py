"""Journey: higher resolution (paper, Appendix C), as docs/weights.md shows it.

`keras-mixer convert CHECKPOINT.npz --input-size 2x` -> reload the tiled
weights -> fine-tune them on other classes with `keras-mixer train --weights`
-> export the run's model and verify it.
"""

import json

import numpy as np
from helpers import TINY, TINY_SIZE, tiny_params, write_checkpoint

import keras_mixer
from keras_mixer import cli
from keras_mixer.export.verify import verify


def test_convert_at_twice_the_size_reload_fine_tune_and_export(tmp_path, capsys):
    rng = np.random.default_rng(0)
    npz = write_checkpoint(tmp_path / "tiny.npz", tiny_params(rng))  # 16 px, 7 classes
    big = 2 * TINY_SIZE
    h5 = tmp_path / "tiny_32.weights.h5"
    assert cli.main(["convert", npz, "-o", str(h5), "--input-size", str(big)]) == 0
    direct = keras_mixer.Mixer(TINY, weights=npz, input_shape=(big, big, 3))
    reloaded = keras_mixer.Mixer(TINY, weights=str(h5), input_shape=(big, big, 3))
    x = rng.uniform(0, 255, (2, big, big, 3)).astype(np.float32)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), direct.predict(x, verbose=0),
                               atol=1e-6)

    run = tmp_path / "run"
    argv = ["train", "--model", json.dumps(TINY), "--weights", str(h5), "--image-size", str(big),
            "--epochs", "1", "--batch-size", "64", "--warmup-steps", "0", "--output-dir", str(run)]
    assert cli.main(argv) == 0  # the digits: 10 classes, so a new head on the tiled backbone
    trained = keras_mixer.load_model(str(run / "model.keras"))
    assert trained.output_shape == (None, 10) and trained.input_shape == (None, big, big, 3)
    assert trained.get_layer("MixerBlock_0").tokens_mlp_dim == 4 * TINY["tokens_mlp_dim"]

    out = str(tmp_path / "hi.tflite")
    assert cli.main(["export", "tflite", str(run / "model.keras"), "-o", out]) == 0
    report = verify(out, str(run / "model.keras"), count=50)
    assert report["top1_agreement"] == 1.0 and report["max_abs_error"] < 1e-4
