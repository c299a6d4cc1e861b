"""Smoke tests of the benchmark harness (`python -m benchmarks`): its measuring
primitives, the recorded results, and --quick sections on a tiny model.
Sections that start child processes or convert files run under `-m large`."""

import json
import math
import os
import re
import shutil

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import harness, profile
from benchmarks.__main__ import SECTIONS, main
from benchmarks.jax_worker import JaxWorker

# Paper Table 1 (also in /work/shared/reference/mixer.md): GMACs at 224.
PAPER_GMACS = {"S/32": 1.00, "S/16": 3.78, "S/8": 14.9, "B/32": 3.24, "B/16": 12.60,
               "L/32": 11.25, "L/16": 44.55, "H/14": 121.0}
FAST = ("parts", "profile", "tokenmix")  # in-process, seconds each


@pytest.mark.parametrize("variant", sorted(PAPER_GMACS))
def test_macs_formula_matches_the_paper_within_one_percent(variant):
    config = harness.config_of(variant)
    assert harness.model_macs(config, 224) / 1e9 == pytest.approx(PAPER_GMACS[variant], rel=0.01)
    assert harness.model_flops(config, 224) == 2 * harness.model_macs(config, 224)


def test_interleaved_warms_up_then_rotates_the_order():
    order = []
    times = harness.interleaved({n: (lambda n=n: order.append(n)) for n in "abc"}, rounds=3)
    assert order == list("abc") + list("abc") + list("bca") + list("cab")
    assert all(len(t) == 3 and min(t) >= 0 for t in times.values())
    assert harness.summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}


def test_bad_arguments_are_refused_naming_the_value(tmp_path):
    with pytest.raises(ValueError, match=r"rounds: expected an int >= 1; got 0"):
        harness.interleaved({"a": int}, rounds=0)
    with pytest.raises(ValueError, match=r"candidates: .*got \{\}"):
        harness.interleaved({}, rounds=1)
    with pytest.raises(ValueError, match=r"values: expected a non-empty list"):
        harness.summary([])
    with pytest.raises(ValueError, match=r"section: .*got 'Bad Name'"):
        harness.write_results("Bad Name", {}, "# t", out_dir=str(tmp_path))
    assert not os.listdir(tmp_path)


def test_machine_info_reports_this_machine():
    import keras

    m = harness.machine_info()
    assert m["cores"] == os.cpu_count() and len(m["load_avg"]) == 3
    assert m["keras"] == keras.__version__ and m["numpy"] == np.__version__
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
        assert m["cpu"] and set(m["simd_flags"]) <= words
    line = harness.machine_line(m)
    assert line.startswith(f"Machine: {m['cpu']}, {m['cores']} cores") and "keras " in line


def test_self_time_subtracts_nested_children():
    names = {1: "step:__inference_f", 2: "block/MatMul:_MklMatMul", 3: "block/Mul:Mul",
             4: "dot.12"}
    metadata = {k: SimpleNamespace(name=v) for k, v in names.items()}
    ev = lambda m, start, dur: SimpleNamespace(metadata_id=m, offset_ps=start, duration_ps=dur)  # noqa: E731
    # A 100-unit frame holding a 60-unit matmul and, after it, a 30-unit mul.
    line = SimpleNamespace(events=[ev(1, 0, 100), ev(3, 60, 30), ev(2, 0, 60), ev(4, 200, 5)])
    assert dict(profile.self_times(line, metadata)) == {
        names[1]: 10, names[2]: 60, names[3]: 30, names[4]: 5}
    assert [profile.op_type(n) for n in names.values()] == [None, "_MklMatMul", "Mul", "dot"]


def test_cli_lists_sections_and_refuses_unknown_ones(capsys):
    main(["--list"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(SECTIONS)
    with pytest.raises(SystemExit):
        main(["gpu", "--quick"])
    err = capsys.readouterr().err
    assert "SECTION" in err and "'gpu'" in err


def test_recorded_results_render_to_the_committed_markdown(tmp_path):
    """--render of every committed JSON reproduces its committed markdown, which
    names the machine and carries no stale text."""
    shutil.copytree(harness.RESULTS, tmp_path / "results", ignore=shutil.ignore_patterns("quick"))
    folders = {os.path.dirname(p) for p in _files(tmp_path / "results", ".json")}
    for folder in sorted(folders):
        main(["--render", "--out", folder])
    mds = _files(tmp_path / "results", ".md")
    assert len(mds) == len(_files(tmp_path / "results", ".json")) >= len(SECTIONS)
    for path in mds:
        text = open(path).read()
        assert text == open(path.replace(str(tmp_path / "results"), harness.RESULTS)).read(), path
        assert text.splitlines()[2].startswith("Machine: ")
        assert not re.search(r"No GPU was lent|Goals|issue \d|earlier run", text), path


def test_jax_worker_times_a_jitted_gemm_and_reports_errors():
    with JaxWorker() as worker:
        timer = worker.gemm(64)
        assert timer()["s"] > 0
        with pytest.raises(RuntimeError, match=r"cmd: expected .*got 'bogus'"):
            worker.ask(cmd="bogus")


def test_conversion_child_reports_time_memory_and_parameters(tmp_path):
    from benchmarks import convert
    from keras_mixer.weights import checkpoint_shapes

    shapes = checkpoint_shapes(harness.QUICK_MODEL, 64, 1000)  # 32x32 images
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "q.npz", **{k: rng.standard_normal(s, dtype=np.float32)
                                    for k, s in shapes.items()})
    out = convert.child({"variant": harness.QUICK_MODEL, "weights": str(tmp_path / "q.npz")})
    assert out["seconds"] > 0 and out["peak_rss_mib"] >= out["base_rss_mib"] > 0
    assert out["params"] == sum(math.prod(s) for s in shapes.values())


# --- quick sections end to end ----------------------------------------------


@pytest.fixture(scope="module")
def fast_results(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("quick"))
    main([*FAST, "--quick", "--out", out])
    return out


@pytest.mark.parametrize("section", FAST)
def test_quick_section(section, fast_results):
    _check(section, fast_results)


@pytest.mark.large
@pytest.mark.parametrize("section", [s for s in SECTIONS if s not in FAST])
def test_quick_section_large(section, tmp_path):
    main([section, "--quick", "--out", str(tmp_path)])
    _check(section, str(tmp_path))


def _check(section, out):
    with open(os.path.join(out, section + ".json")) as f:
        data = json.load(f)
    text = open(os.path.join(out, section + ".md")).read()
    assert data["machine"]["cpu"] == harness.machine_info()["cpu"]
    assert harness.machine_line(data["machine"]) in text and text.startswith("# ")
    assert {section, "--quick"} <= set(data["command"].split()) and data["wall_s"] > 0
    CHECKS[section](data)


def _ratio_fits(ratio, num, den):
    """A per-round ratio of rates num/den lies within what their ranges allow."""
    assert num["min"] / den["max"] * 0.999 <= ratio["min"] <= ratio["median"] <= ratio["max"]
    assert ratio["max"] <= num["max"] / den["min"] * 1.001


def _parts(d):
    p = d["parts"]
    assert p["block"]["gflop"] == pytest.approx(p["token GEMMs"]["gflop"] + p["channel GEMMs"]["gflop"])
    for v in p.values():
        assert v["ms"]["min"] > 0 and v["gflops"]["min"] == pytest.approx(v["gflop"] / v["ms"]["max"] * 1e3)
        assert 0 < v["peak_fraction"]["median"] <= v["gflops"]["max"] / d["peak_gflops"]["min"]
    assert p["block"]["share_of_block"] == {"median": 1.0, "min": 1.0, "max": 1.0}


def _profile(d):
    for mode in ("graph", "xla"):
        p = d[mode]
        assert p["wall_ms"] > 0 and p["top"] and all(o["count"] >= 1 for o in p["top"])
        assert 0 < sum(o["share"] for o in p["top"]) <= 1 + 1e-9
    assert any("MatMul" in o["op"] for o in d["graph"]["top"])


def _tokenmix(d):
    assert 0 < d["logit_scale"] and d["max_logit_diff"] <= 1e-4 * d["logit_scale"]
    for m, ratio in d["einsum_speedup"].items():
        _ratio_fits(ratio, d["images_s"][f"einsum {m}"], d["images_s"][f"transpose {m}"])


def _gemm(d):
    assert all(v["min"] > 0 for v in d["gflops"].values())
    assert {"tflite_int8_1t", "tflite_int8_2t", "jax_xla_f32", "numpy_f32"} <= set(d["gflops"])
    f32 = {k: v["median"] for k, v in d["gflops"].items() if k.endswith("f32") and "tflite" not in k}
    assert d["peak_name"] == max(f32, key=f32.get) and d["peak_gflops"] == f32[d["peak_name"]]


def _infer(d):
    for row in d["rows"]:
        m = row["modes"]
        assert set(m) == {"eager", "predict", "tf.function", "xla", "jax_jit"}
        assert all(v["images_s"]["min"] > 0 and v["first_call_s"] > 0 for v in m.values())
        _ratio_fits(row["xla_over_eager"], m["xla"]["images_s"], m["eager"]["images_s"])


def _train_step(d):
    m = d["modes"]
    assert set(m) == {"float32", "float32 + xla", "bfloat16", "bfloat16 + xla"}
    for k, v in m.items():
        assert v["images_s"]["min"] > 0 and v["peak_fraction"]["min"] > 0
        _ratio_fits(d["speedup_vs_float32"][k], v["images_s"], m["float32"]["images_s"])


def _tflite(d):
    for r in d["models"].values():
        assert r["bytes"]["fp16"] < r["bytes"]["fp32"] and r["bytes"]["int8"] < r["bytes"]["fp32"]
        assert r["xnnpack_partitions"]["fp32"] == 1
        for k, lat in r["latency_ms"].items():  # latency, so the ratio is fp32 / mode
            _ratio_fits(r["speedup_vs_fp32"][k], r["latency_ms"][f"fp32 {k.split()[1]}"], lat)
    assert d["accuracy"]["fp32"]["top1_agreement"] >= 0.99
    assert all(0 <= v["tflite_accuracy"] <= 1 for v in d["accuracy"].values())


def _saved_model(d):
    assert d["no_xla"]["first_call_s"] > 0 and d["xla"]["first_call_s"] > 0
    _ratio_fits(d["xla_speedup"], d["xla"]["images_per_s"], d["no_xla"]["images_per_s"])


def _server(d):
    for row in d["rows"]:
        modes = row["modes"]
        assert row["best"] in modes and modes[row["best"]]["vs_best"]["median"] == pytest.approx(1.0)
        for mode in modes.values():
            assert mode["images_s"]["min"] > 0 and mode["vs_best"]["median"] <= 1.0 + 1e-9
            assert mode["images_s"]["min"] <= mode["images_s"]["median"] <= mode["images_s"]["max"]


def _convert(d):
    from keras_mixer.weights import checkpoint_shapes

    (row,) = d["rows"]
    shapes = checkpoint_shapes(harness.QUICK_MODEL, (224 // 4) ** 2, 1000)
    assert row["params"] == sum(math.prod(s) for s in shapes.values())
    for run in (row["load"], row["random_init"]):
        assert run["seconds"]["min"] > 0 and run["peak_rss_mib"]["min"] >= run["base_rss_mib"]["max"]


def _flax_reference(d):
    assert d["logit_scale"] > 0.01 and d["max_logit_diff"] <= 1e-4 * max(1.0, d["logit_scale"])
    m = d["models"]
    _ratio_fits(d["keras_over_flax"], m["keras_mixer jax"]["images_s"], m["authors' flax"]["images_s"])


def _train_default(d):
    from keras_mixer.training.recipes import DEFAULT_MODEL

    (run,) = d["runs"]
    assert run["epochs"] == 1 and 0 <= run["test_accuracy"] <= run["test_top5"] <= 1
    assert run["parameters"] == harness.build(dict(DEFAULT_MODEL), 32, classes=10).count_params()
    assert set(d["step_throughput"]["modes"]) == {"float32", "float32 + xla"}


CHECKS = {name: globals()["_" + name] for name in SECTIONS}


def _files(root, ext):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(ext))
