"""Hostile and broken weight files, killed downloads and killed writes.

Each case is refused before any variable is written (the model keeps its
values) and names the file and the key; a download or an output killed
half-way never leaves a file at its final path.
"""

import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import keras
import numpy as np
import pytest

import keras_mixer
import reference
from helpers import TINY, TINY_SIZE, images, key_parts, tiny_params, write_checkpoint
from keras_mixer import inference
from keras_mixer import weights as weights_lib

SHAPE = (TINY_SIZE, TINY_SIZE, 3)


def _tiny(**kwargs):
    return keras_mixer.Mixer(TINY, input_shape=SHAPE, classes=7, **kwargs)


BOMB_KEY = "MixerBlock_1/channel_mixing/Dense_0/kernel"


def test_npz_bomb_is_refused_from_its_headers(tmp_path):
    # A member declaring 512 MiB of float32 zeros deflates to well under 1 MB.
    path = tmp_path / "bomb.npz"
    params = tiny_params(np.random.default_rng(0))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in params.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as f:
                if key != BOMB_KEY:
                    np.lib.format.write_array(f, value)
                    continue
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "<f4", "fortran_order": False, "shape": (2**27,)})
                chunk = bytes(2**24)
                for _ in range(32):
                    f.write(chunk)
    assert os.path.getsize(path) < 5e6
    check = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from helpers import TINY
        import keras_mixer
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            keras_mixer.Mixer(TINY, weights={str(path)!r}, input_shape=(16, 16, 3), classes=7)
        except ValueError as err:
            print("REFUSED", err)
        print("GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         timeout=300).stdout
    assert "REFUSED weights: " in out and f"'{BOMB_KEY}': checkpoint (134217728,)" in out
    growth = float(out.split("GROWTH_MB")[1])
    assert growth < 200, f"refusing the file cost {growth:.0f} MB"  # the member is 512 MB


@pytest.mark.parametrize("case", ["strings", "nan", "inf", "negative_shape"])
def test_bad_arrays_are_refused_before_any_write(tmp_path, case):
    params = tiny_params(np.random.default_rng(0))
    key = "MixerBlock_1/channel_mixing/Dense_1/kernel"
    if case == "strings":
        params[key] = np.full(params[key].shape, "x")
    elif case == "nan":
        params[key][0, 0] = np.nan
    elif case == "inf":
        params[key][3, 1] = np.inf
    path = write_checkpoint(tmp_path / "bad.npz", params)
    if case == "negative_shape":  # a crafted header: patch the shape tuple in place
        data = open(path, "rb").read()
        shape = str(params[key].shape).encode()
        assert data.count(shape) >= 1
        data = data.replace(b"'shape': (32, 16)", b"'shape': (-32, 16)", 1)
        open(path, "wb").write(data)
    model = _tiny()
    before = [v.numpy().copy() for v in model.weights]
    expected = {"strings": r"not floating point, first '.*': <U1|str",
                "nan": r"NaN or Inf values in 1 tensor\(s\), e\.g\. \['" + key,
                "inf": r"NaN or Inf values in 1 tensor\(s\), e\.g\. \['" + key,
                "negative_shape": r"readable checkpoint|mis-shaped"}[case]
    with pytest.raises(ValueError, match=r"weights: '.*bad.npz'.*" + expected):
        keras_mixer.Mixer(TINY, weights=path, input_shape=SHAPE, classes=7)
    if case != "negative_shape":  # writing into an existing model: all checked first
        with pytest.raises(ValueError, match=f"weights: '{key}' is not finite floating point"):
            weights_lib.assign_checkpoint(model, params)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))


def test_keras_weights_of_a_deeper_model_or_junk_are_refused(tmp_path):
    deep = keras_mixer.Mixer(dict(TINY, num_blocks=3), input_shape=SHAPE, classes=7)
    deep.save_weights(tmp_path / "deep.weights.h5")
    # Refused by the file's own names of the extra block's variables, and ours.
    with pytest.raises(ValueError, match=key_parts(
            "weights:", "deep.weights.h5", "nothing was loaded", "12 unexpected",
            "'layers/mixer_block_2/layer_norm_0/vars/1' ('MixerBlock_2/LayerNorm_0/bias')")):
        _tiny(weights=str(tmp_path / "deep.weights.h5"))
    (tmp_path / "junk.weights.h5").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match=r"weights: '.*junk.weights.h5' is not a readable Keras"):
        _tiny(weights=str(tmp_path / "junk.weights.h5"))


def test_high_resolution_weights_reload_through_every_documented_path(tmp_path, rng):
    path = write_checkpoint(tmp_path / "tiny.npz", tiny_params(rng))
    direct = keras_mixer.Mixer(TINY, weights=path, input_shape=(32, 32, 3))
    x = images(rng, 2, size=32)
    want = direct.predict(x, verbose=0)
    inference.convert(path, str(tmp_path / "hi.weights.h5"), input_size=32)
    direct.save(tmp_path / "hi.keras")
    for saved in ("hi.weights.h5", "hi.keras"):
        again = keras_mixer.Mixer(TINY, weights=str(tmp_path / saved), input_shape=(32, 32, 3),
                                  classes=7)
        np.testing.assert_array_equal(again.predict(x, verbose=0), want)


class _SlowFile(http.server.BaseHTTPRequestHandler):
    data, delay, gets = b"", 0.0, 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).gets += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        for start in range(0, len(self.data), 1024):
            self.wfile.write(self.data[start:start + 1024])
            time.sleep(self.delay)

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_server(tmp_path):
    params = tiny_params(np.random.default_rng(0))
    write_checkpoint(tmp_path / "src.npz", params)
    _SlowFile.data = (tmp_path / "src.npz").read_bytes()
    _SlowFile.gets = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowFile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", params
    server.shutdown()


DOWNLOAD = textwrap.dedent("""
    import sys
    from keras_mixer import weights
    print(weights.get_weights_file("imagenet_gsam", "S/32", cache_dir=sys.argv[1]))
""")


def test_killed_download_never_poisons_the_cache(tmp_path, slow_server, monkeypatch):
    url, params = slow_server
    cache = tmp_path / "cache"
    final = cache / "keras_mixer" / "gsam_Mixer-S_32.npz"
    env = dict(os.environ, KERAS_MIXER_WEIGHTS_URL=url)
    _SlowFile.delay = 0.05  # 1 KiB chunks: seconds to download
    proc = subprocess.Popen([sys.executable, "-c", DOWNLOAD, str(cache)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    partial = []
    while not partial and time.time() < deadline and proc.poll() is None:
        partial = list((cache / "keras_mixer").glob("*.partial-*")) if cache.exists() else []
        time.sleep(0.02)
    assert partial, "the download never started"
    proc.send_signal(signal.SIGSTOP)  # frozen mid-download, then killed
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not final.exists()  # only the partial name was ever written
    _SlowFile.delay = 0.0
    monkeypatch.setenv("KERAS_MIXER_WEIGHTS_URL", url)
    path = weights_lib.get_weights_file("imagenet_gsam", "S/32", cache_dir=str(cache))
    assert path == str(final)
    np.testing.assert_array_equal(np.load(path)["stem/kernel"], params["stem/kernel"])


def test_two_processes_fetching_one_file_download_it_once(tmp_path, slow_server):
    url, params = slow_server
    cache = tmp_path / "cache"
    env = dict(os.environ, KERAS_MIXER_WEIGHTS_URL=url, TF_CPP_MIN_LOG_LEVEL="3")
    _SlowFile.delay = 0.02  # a download of a second or more: the two overlap
    procs = [subprocess.Popen([sys.executable, "-c", DOWNLOAD, str(cache)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    _SlowFile.delay = 0.0
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in outs]
    final = str(cache / "keras_mixer" / "gsam_Mixer-S_32.npz")
    assert [out.strip().splitlines()[-1] for out, _ in outs] == [final, final]
    assert _SlowFile.gets == 1, f"{_SlowFile.gets} downloads of one file"
    # The one that waited said for whom.
    assert any("waiting for PID" in err and final in err for _, err in outs), outs
    np.testing.assert_array_equal(np.load(final)["stem/kernel"], params["stem/kernel"])


@pytest.mark.parametrize("poison", [b"<html><body>502 Bad Gateway</body></html>", b"PK\x03\x04tr"])
def test_unreadable_cached_file_is_fetched_again(tmp_path, slow_server, monkeypatch, capsys, poison):
    url, params = slow_server
    final = tmp_path / "cache" / "keras_mixer" / "gsam_Mixer-S_32.npz"
    final.parent.mkdir(parents=True)
    final.write_bytes(poison)  # an HTML page from a mirror, or an older truncated file
    monkeypatch.setenv("KERAS_MIXER_WEIGHTS_URL", url)
    path = weights_lib.get_weights_file("imagenet_gsam", "S/32", cache_dir=str(tmp_path / "cache"))
    assert f"the cached {final} is unreadable" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(path)["head/bias"], params["head/bias"])


def test_convert_killed_while_writing_leaves_no_output(tmp_path):
    # S/32 at full size: a 76 MB output, written long enough to be caught half-way.
    params = reference.random_checkpoint(np.random.default_rng(0), 8, 32, 512, 256, 2048,
                                         tokens=49, classes=1000)
    src = write_checkpoint(tmp_path / "Mixer-S_32.npz", params)
    out = tmp_path / "s32.keras"
    proc = subprocess.Popen([sys.executable, "-m", "keras_mixer.cli", "convert", src, "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not list(tmp_path.glob(".s32.keras*")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGSTOP)
    assert list(tmp_path.glob(".s32.keras*")), "no temporary output was seen"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    assert subprocess.run([sys.executable, "-m", "keras_mixer.cli", "convert", src, "-o", str(out)],
                          capture_output=True, timeout=300).returncode == 0
    assert keras.models.load_model(out).count_params() == 19_104_624
