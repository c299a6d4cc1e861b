"""Journey: a released checkpoint on a fresh machine, the keras.applications way.

Fresh Keras cache -> `MixerS32(weights="imagenet")` downloaded from a mirror
(`KERAS_MIXER_WEIGHTS_URL`, a file:// URL standing for the bucket) -> predict
an image file -> save `.keras` -> reload in a new process, with keras_mixer
imported before keras and after it.
"""

import os
import shutil

import numpy as np
import pytest
from journeys import photo, predict_in_new_process, s32_bucket

import keras_mixer
from keras_mixer import weights as weights_lib
from keras_mixer.inference import predict


def test_tag_from_a_mirror_predicts_saves_and_reloads_in_either_import_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    bucket, _ = s32_bucket(tmp_path / "bucket", rng)
    cache = os.path.join(os.environ["KERAS_HOME"], "keras_mixer")  # conftest's sandbox
    shutil.rmtree(cache, ignore_errors=True)
    monkeypatch.setenv(weights_lib.MIRROR_ENV, bucket.as_uri() + "/")
    image = photo(tmp_path / "cat.png", rng)

    # `keras-mixer predict cat.png --model S/32 --weights imagenet` (its library call).
    top = predict([image], model="S/32", weights="imagenet", top=3)[0]
    assert os.path.isfile(os.path.join(cache, "gsam_Mixer-S_32.npz"))
    shutil.rmtree(bucket)  # from now on the cache alone serves the file

    model = keras_mixer.MixerS32(weights="imagenet")
    x = keras_mixer.load_image(image, keras_mixer.EvalTransform.of(model))[None]
    probs = model.predict(x, verbose=0)
    decoded = keras_mixer.decode_predictions(probs, top=3)[0]
    assert [name for name, _ in top] == [name for _, name, _ in decoded]
    assert [s for _, s in top] == pytest.approx([float(s) for _, _, s in decoded], abs=1e-6)

    path = tmp_path / "s32.keras"
    model.save(path)
    for imports in ("import keras_mixer, keras", "import keras, keras_mixer"):
        again = predict_in_new_process(imports, path, x, tmp_path)
        np.testing.assert_allclose(again, probs, atol=1e-6, err_msg=imports)
