"""Canaries for the private and experimental Keras, TensorFlow and LiteRT APIs
keras-mixer relies on (docs/design.md, "Private APIs we rely on").

An upgrade that moves or changes one fails here, with the API's name, the
files that use it and the installed versions, instead of deep inside a
training run or an export. CANARIES below is the twin of the docs table: the
tests check that both list the same APIs and files, that every listed file
still uses its API, and that the code uses no private name of a library that
neither lists.
"""

import ast
import glob
import inspect
import os
import re
import zipfile
from importlib import metadata

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DESIGN = "docs/design.md"
SECTION = "## Private APIs we rely on"
# Where the inventory looks for uses: the package, the exporter, the harness.
SOURCES = ("keras_mixer", "export", "benchmarks")
PACKAGES = ("keras", "tensorflow", "ai-edge-litert", "litert-quantizer", "h5py", "keras-hub")

# API (as the docs table's first cell names it) -> (files that use it, the
# text that marks a use in those files, the check). Filled by @canary.
CANARIES = {}


def canary(api, files, uses):
    def register(check):
        CANARIES[api] = (tuple(files), tuple(uses), check)
        return check
    return register


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


# --- Keras ----------------------------------------------------------------


@canary("Layer._flatten_layers()",
        ["keras_mixer/inference.py", "keras_mixer/training/outputs.py",
         "keras_mixer/optimizers.py", "keras_mixer/visualize.py", "export/rebuild.py"],
        ["._flatten_layers("])
def _flatten_layers(tmp_path):
    import keras

    inner = keras.Sequential([keras.layers.Dense(2, name="inner_dense")], name="inner")
    outer = keras.Sequential([keras.Input((2,)), inner, keras.layers.Dense(1, name="top")],
                             name="outer")
    every = [layer.name for layer in outer._flatten_layers()]
    assert every[0] == "outer" and {"inner", "inner_dense", "top"} <= set(every), every
    top = [layer.name for layer in outer._flatten_layers(include_self=False, recursive=False)]
    assert "outer" not in top and "inner" in top and "inner_dense" not in top, top


@canary("Optimizer._var_key()", ["keras_mixer/optimizers.py"], ["_var_key("])
def _var_key(tmp_path):
    # layer_decay keys each model variable as the optimizer keys the variables
    # its update_step(gradient, variable, learning_rate) receives.
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    seen = []

    class Probe(keras.optimizers.SGD):
        def update_step(self, gradient, variable, learning_rate):
            seen.append(self._var_key(variable))
            return super().update_step(gradient, variable, learning_rate)

    optimizer = Probe(0.1)
    model.compile(optimizer, "mse")
    model.train_on_batch(np.ones((2, 2), np.float32), np.ones((2, 1), np.float32))
    assert seen and set(seen) == {optimizer._var_key(v) for v in model.trainable_weights}


@canary("BackupAndRestore._save_model()", ["keras_mixer/training/backup.py"],
        ["_save_model", "_load_model", "_current_epoch"])
def _backup_hooks(tmp_path):
    import keras

    callback = keras.callbacks.BackupAndRestore(str(tmp_path), save_freq="epoch",
                                                delete_checkpoint=False)
    assert callback.backup_dir == str(tmp_path)
    assert callable(getattr(keras.callbacks.BackupAndRestore, "_load_model"))
    saved = []
    callback._save_model = lambda: saved.append(callback._current_epoch)
    callback.on_train_batch_end(0)
    callback.on_epoch_end(2)
    assert saved == [3], f"on_epoch_end(2) saved {saved}; expected _save_model() once with _current_epoch 3"
    callback.on_train_end()
    assert os.path.isdir(tmp_path), "delete_checkpoint=False no longer keeps the backup"


@canary("Model._initial_epoch", ["keras_mixer/training/backup.py"], ["._initial_epoch"])
def _initial_epoch(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    epochs = []

    class Resume(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.model._initial_epoch = 2

        def on_epoch_begin(self, epoch, logs=None):
            epochs.append(epoch)

    model.fit(np.ones((4, 2), np.float32), np.ones((4, 1), np.float32), epochs=4, verbose=0,
              callbacks=[Resume()])
    assert epochs == [2, 3], f"fit ran epochs {epochs}; expected it to start at _initial_epoch 2"


@canary("KerasTensor._keras_history", ["export/common.py"], ["_keras_history", "._inbound_nodes"])
def _keras_history(tmp_path):
    # The export reads which layer made the model's output, and that layer's
    # input, to tell logits from probabilities (a final Softmax or activation).
    import keras

    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    outputs = keras.layers.Softmax(name="head")(hidden)
    layer, node_index = outputs._keras_history[0], outputs._keras_history[1]
    assert layer.name == "head", layer
    previous = layer._inbound_nodes[node_index].input_tensors
    assert len(previous) == 1 and previous[0]._keras_history[0].name == "hidden", previous


@canary("LayerNormalization.rms_scaling", ["export/rebuild.py"], ["rms_scaling"])
def _layer_norm_state(tmp_path):
    # The export copy swaps each LayerNormalization's class; the new call()
    # reads the layer's own attributes.
    import keras

    layer = keras.layers.LayerNormalization(epsilon=1e-6)
    layer.build((None, 4, 8))
    missing = [a for a in ("axis", "epsilon", "center", "scale", "rms_scaling", "gamma", "beta",
                           "compute_dtype") if not hasattr(layer, a)]
    assert not missing, f"LayerNormalization has no {missing}"
    assert layer.rms_scaling is False and layer.epsilon == 1e-6
    assert list(inspect.signature(type(layer).call).parameters) == ["self", "inputs"]


@canary("layers/<layer>/vars/<i>", ["keras_mixer/weights/keras_file.py"],
        ["/vars/", "model.weights.h5"])
def _keras_file_layout(tmp_path):
    import h5py

    from keras_mixer.model import Mixer

    tiny = dict(num_blocks=2, patch_size=4, hidden_dim=16, tokens_mlp_dim=8, channels_mlp_dim=32)
    model = Mixer(tiny, input_shape=(16, 16, 3), classes=3)
    model.save_weights(str(tmp_path / "m.weights.h5"))
    names = []
    with h5py.File(tmp_path / "m.weights.h5", "r") as f:
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    odd = [n for n in names if not re.fullmatch(r"layers/(.+)/vars/(\d+)", n)]
    assert names and not odd, f"datasets outside layers/<layer>/vars/<i>: {odd}"
    expected = {"layers/conv2d/vars/0", "layers/mixer_block/token_mixing/dense_0/vars/0",
                "layers/mixer_block_1/layer_norm_0/vars/1", "layers/layer_normalization/vars/0",
                "layers/dense/vars/1"}
    assert expected <= set(names), f"missing {sorted(expected - set(names))}; the file has {names}"
    model.save(str(tmp_path / "m.keras"))
    members = set(zipfile.ZipFile(tmp_path / "m.keras").namelist())
    assert {"model.weights.h5", "config.json"} <= members, members


@canary("keras.src.backend.config.keras_home()", ["keras_mixer/weights/download.py"],
        ["keras_home"])
def _keras_home(tmp_path):
    # The weights cache is looked up where keras.utils.get_file itself writes.
    import keras
    from keras.src.backend.config import keras_home
    from keras.src.utils import file_utils

    assert isinstance(keras_home(), str) and keras_home()
    assert "keras_home()" in inspect.getsource(file_utils.get_file), \
        "keras.utils.get_file no longer defaults its cache_dir to keras_home()"
    assert keras.utils.get_file is file_utils.get_file


# --- TensorFlow -------------------------------------------------------------


@canary("tensorflow.tsl.profiler.protobuf.xplane_pb2", ["benchmarks/profile.py"], ["xplane_pb2"])
def _xplane(tmp_path):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    fields = {"XSpace": {"planes"}, "XPlane": {"name", "lines", "event_metadata"},
              "XLine": {"events"}, "XEvent": {"offset_ps", "duration_ps", "metadata_id"},
              "XEventMetadata": {"name"}}
    for message, names in fields.items():
        have = set(getattr(xplane_pb2, message).DESCRIPTOR.fields_by_name)
        assert names <= have, f"{message} lacks {sorted(names - have)}"


@canary("tf.lite.experimental.QuantizationDebugger", ["export/tflite.py"],
        ["QuantizationDebugger"])
def _quantization_debugger(tmp_path):
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger
    params = inspect.signature(debugger).parameters
    assert {"converter", "debug_dataset", "debug_options"} <= set(params), list(params)
    assert callable(getattr(debugger, "get_nondebug_quantized_model"))
    assert "denylisted_ops" in inspect.signature(tf.lite.experimental.QuantizationDebugOptions).parameters


@canary("tf.distribute.Strategy.experimental_distribute_dataset",
        ["keras_mixer/training/multiworker.py"], ["experimental_distribute_dataset"])
def _distribute_dataset(tmp_path):
    import tensorflow as tf

    assert callable(tf.distribute.Strategy.experimental_distribute_dataset)
    assert callable(tf.distribute.MultiWorkerMirroredStrategy.experimental_distribute_dataset)


@canary("tf.data.experimental.AutoShardPolicy", ["keras_mixer/training/data.py"],
        ["AutoShardPolicy", "experimental_distribute.auto_shard_policy"])
def _auto_shard(tmp_path):
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy.DATA
    assert options.experimental_distribute.auto_shard_policy == policy.DATA
    assert {"AUTO", "DATA"} <= set(policy.__members__)


@canary("tf.config.experimental_connect_to_cluster", ["keras_mixer/training/strategy.py"],
        ["experimental_connect_to_cluster", "tf.tpu.experimental.initialize_tpu_system"])
def _tpu_setup(tmp_path):
    import tensorflow as tf

    assert callable(tf.config.experimental_connect_to_cluster)
    assert callable(tf.tpu.experimental.initialize_tpu_system)


@canary("tf.profiler.experimental.start", ["benchmarks/profile.py"],
        ["tf.profiler.experimental.start", "tf.profiler.experimental.stop"])
def _profiler(tmp_path):
    import tensorflow as tf

    assert callable(tf.profiler.experimental.start) and callable(tf.profiler.experimental.stop)
    assert "logdir" in inspect.signature(tf.profiler.experimental.start).parameters


# --- LiteRT -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tflite():
    """A float .tflite of one FULLY_CONNECTED and a SOFTMAX (converted in seconds)."""
    import tensorflow as tf

    weights = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3) / 12)

    @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32)])
    def fn(x):
        return tf.nn.softmax(tf.matmul(x, weights) + 1.0)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    return converter.convert()


@canary("Interpreter._get_ops_details()", ["export/targets.py"], ["._get_ops_details("])
def _ops_details(tmp_path, tflite):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite, num_threads=1)
    interp.allocate_tensors()
    details = interp._get_ops_details()
    assert details and all({"index", "op_name", "inputs", "outputs"} <= set(d) for d in details), details
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    assert len(delegates) == 1, f"expected the default XNNPACK delegate as one DELEGATE node: {details}"
    model_input = interp.get_input_details()[0]["index"]
    assert model_input in np.asarray(delegates[0]["inputs"]).tolist()


@canary("ai_edge_litert.schema_py_generated", ["export/targets.py", "export/tflite.py"],
        ["schema_py_generated"])
def _schema(tmp_path, tflite):
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(tflite, 0)
    graph = model.Subgraphs(0)
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        ops.append(names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
        assert op.InputsLength() and types[graph.Tensors(op.Inputs(0)).Type()] == "FLOAT32"
        assert callable(code.CustomCode)
    assert {"FULLY_CONNECTED", "SOFTMAX"} <= set(ops), ops
    assert {"RSQRT", "MEAN", "SUB", "ADD", "SQUARED_DIFFERENCE"} <= set(names.values())
    assert {"INT8", "UINT8", "INT16"} <= set(types.values())


@canary("litert_quantizer.qtyping.TFLOperationName", ["export/quantizer.py"],
        ["TFLOperationName"])
def _op_names(tmp_path):
    from litert_quantizer.qtyping import TFLOperationName

    values = {op.value for op in TFLOperationName}
    assert {"*", "INPUT", "OUTPUT", "RSQRT", "SOFTMAX", "FULLY_CONNECTED"} <= values, values


@canary("litert_quantizer.utils.validation_utils.ValidationErrorMetric", ["export/quantizer.py"],
        ["validation_utils"])
def _error_metrics(tmp_path):
    from litert_quantizer.utils import validation_utils

    metric = validation_utils.ValidationErrorMetric
    # The values are also the keys of each tensor's result (export/quantizer.py _metric).
    assert metric.SNR.value == "snr" and metric.COSINE_SIMILARITY.value == "cosine_similarity"


@canary("ComparisonResult.get_signature_comparison_result()", ["export/quantizer.py"],
        ["get_signature_comparison_result", "intermediate_tensors", "output_tensors"])
def _comparison_result(tmp_path):
    from litert_quantizer import model_validator, quantizer

    assert inspect.signature(quantizer.Quantizer.validate).return_annotation in (
        model_validator.ComparisonResult, "model_validator.ComparisonResult")
    assert callable(model_validator.ComparisonResult.get_signature_comparison_result)
    fields = getattr(model_validator.SingleSignatureComparisonResult, "__annotations__", {})
    assert {"output_tensors", "intermediate_tensors"} <= set(fields), fields


@canary("no_quantize", ["export/quantizer.py"], ['"no_quantize"'])
def _no_quantize(tmp_path):
    from litert_quantizer import recipe
    from litert_quantizer.algorithm_manager import AlgorithmName

    assert AlgorithmName.NO_QUANTIZE.value == "no_quantize"
    # The recipe functions export/quantizer.py appends its rules to, by the
    # names export/metadata.py records (LITERT_RECIPES).
    tree = ast.parse(read("export/metadata.py"))
    names = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                 if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "LITERT_RECIPES" for t in node.targets))
    for name in names:
        rules = getattr(recipe, name)()
        assert isinstance(rules, list) and all(
            {"regex", "operation", "algorithm_key"} <= set(r) for r in rules), (name, rules)


# --- keras-hub --------------------------------------------------------------


@canary("ImageConverter.resizing", ["keras_mixer/hub.py"], ["self.resizing"])
def _image_converter_resizing(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    class Zeros(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.height, self.width = 4, 5

        def call(self, images):
            return keras.ops.zeros((keras.ops.shape(images)[0], 4, 5, 3))

    converter = keras_hub.layers.ImageConverter(image_size=(4, 5), scale=2.0, offset=0.5,
                                                crop_to_aspect_ratio=True)
    assert isinstance(converter.resizing, keras.layers.Layer), type(converter.resizing)
    converter.resizing = Zeros()
    assert tuple(converter.image_size) == (4, 5), converter.image_size
    out = keras.ops.convert_to_numpy(converter(np.full((1, 9, 7, 3), 200.0, "float32")))
    # `call` resizes with self.resizing, then scales and offsets: 2 * 0 + 0.5.
    np.testing.assert_array_equal(out, np.full((1, 4, 5, 3), 0.5, "float32"))
    converter.image_size = (6, 7)
    assert (converter.resizing.height, converter.resizing.width) == (6, 7)


# --- the tests ----------------------------------------------------------------


def versions():
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


@pytest.mark.parametrize("api", list(CANARIES))
def test_private_api_is_still_there(api, tmp_path, request):
    files, _, check = CANARIES[api]
    kwargs = {"tflite": request.getfixturevalue("tiny_tflite")} \
        if "tflite" in inspect.signature(check).parameters else {}
    try:
        check(tmp_path, **kwargs)
    except Exception as err:  # noqa: BLE001 - any failure means the API moved or changed
        pytest.fail(f"{api} (used by {', '.join(files)}) moved or changed with {versions()}: "
                    f"{type(err).__name__}: {err}. Update those files and the table in {DESIGN}.",
                    pytrace=False)


def docs_table():
    """{API: [files]} from the table under SECTION in docs/design.md."""
    text = read(DESIGN)
    assert SECTION in text, f"{DESIGN} has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 3:
            continue
        table[re.findall(r"`([^`]+)`", cells[0])[0]] = re.findall(r"`([^`]+)`", cells[2])
    return table


def test_docs_table_and_canaries_list_the_same_apis_and_files():
    table = docs_table()
    assert set(table) == set(CANARIES), (
        f"only in {DESIGN}: {sorted(set(table) - set(CANARIES))}; "
        f"only in tests/test_private_apis.py: {sorted(set(CANARIES) - set(table))}")
    for api, (files, _, _) in CANARIES.items():
        assert sorted(table[api]) == sorted(files), f"{api}: {DESIGN} names {table[api]}, the test {files}"


@pytest.mark.parametrize("api", list(CANARIES))
def test_each_listed_file_still_uses_its_api(api):
    files, uses, _ = CANARIES[api]
    for path in files:
        assert os.path.isfile(os.path.join(ROOT, path)), f"{api}: {path} does not exist"
        assert any(u in read(path) for u in uses), (
            f"{path} no longer uses {api} (none of {uses}): take it off the table in {DESIGN} "
            f"and here")


def source_files():
    for top in SOURCES:
        yield from sorted(os.path.relpath(p, ROOT) for p in
                          glob.glob(os.path.join(ROOT, top, "**", "*.py"), recursive=True))


def own_private_names(trees):
    """Private names the project defines itself (functions, classes, attributes)."""
    names = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[-1])
    return {n for n in names if n.startswith("_")}


# Library modules imported as their documented entry points; any deeper one is internal.
PUBLIC_MODULES = {"keras", "tensorflow", "ai_edge_litert.interpreter", "litert_quantizer",
                  "keras_hub", "keras_hub.models", "keras_hub.layers"}
LIBRARIES = ("keras", "tensorflow", "ai_edge_litert", "litert_quantizer", "tf_keras", "keras_hub")


def test_the_code_uses_no_private_library_name_the_table_lacks():
    trees = {path: ast.parse(read(path), path) for path in source_files()}
    own = own_private_names(trees)
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and re.fullmatch(r"_[A-Za-z]\w*", node.attr) \
                    and node.attr not in own:
                found.append((path, node.attr, f"line {node.lineno}: .{node.attr}"))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                for module in modules:
                    if module.split(".")[0] in LIBRARIES and module not in PUBLIC_MODULES:
                        text = " ".join([module, *(a.name for a in node.names)])
                        found.append((path, text, f"line {node.lineno}: import {text}"))
    uncovered = [f"{path} {where}" for path, text, where in found
                 if not any(path in files and any(u.strip('."(') in text for u in uses)
                            for files, uses, _ in CANARIES.values())]
    assert not uncovered, (f"private library names used but not in the table of {DESIGN} "
                           f"(and CANARIES here): {uncovered}")
