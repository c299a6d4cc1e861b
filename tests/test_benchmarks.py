"""Smoke tests of the performance harness (benchmarks/perf.py) at tiny sizes:
the FLOP formula against the paper's GMACs, the profile's self-time
arithmetic, the interleaving, and one quick end-to-end run."""

import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import perf  # noqa: E402
import perf_measure as pm  # noqa: E402
import perf_report  # noqa: E402

from keras_mixer.model import VARIANTS  # noqa: E402

# Paper Table 1 (also in /work/shared/reference/mixer.md): GMACs at 224.
PAPER_GMACS = {"S/32": 1.00, "S/16": 3.78, "S/8": 14.9, "B/32": 3.24, "B/16": 12.60,
               "L/32": 11.25, "L/16": 44.55, "H/14": 121.0}


@pytest.mark.parametrize("variant", sorted(PAPER_GMACS))
def test_macs_formula_matches_the_paper_within_one_percent(variant):
    gmacs = pm.model_macs(VARIANTS[variant], 224) / 1e9
    assert gmacs == pytest.approx(PAPER_GMACS[variant], rel=0.01)
    assert pm.model_flops(VARIANTS[variant], 224) == 2 * pm.model_macs(VARIANTS[variant], 224)


def test_self_time_subtracts_nested_children():
    names = {1: "step:__inference_f", 2: "block/MatMul:_MklMatMul", 3: "block/Mul:Mul",
             4: "dot.12"}
    metadata = {k: SimpleNamespace(name=v) for k, v in names.items()}
    ev = lambda m, start, dur: SimpleNamespace(metadata_id=m, offset_ps=start, duration_ps=dur)  # noqa: E731
    # A 100-unit frame holding a 60-unit matmul and, after it, a 30-unit mul.
    line = SimpleNamespace(events=[ev(1, 0, 100), ev(3, 60, 30), ev(2, 0, 60), ev(4, 200, 5)])
    selfs = dict(perf_report._self_times(line, metadata))
    assert selfs == {names[1]: 10, names[2]: 60, names[3]: 30, names[4]: 5}
    assert [perf_report.op_type(n) for n in names.values()] == [None, "_MklMatMul", "Mul", "dot"]


def test_interleaved_rotates_the_order_and_records_the_load():
    order = []
    fns = {name: (lambda n=name: order.append(n)) for name in "abc"}
    times, loads = pm.interleaved(fns, rounds=3, target_s=0)
    timed = order[6:]  # two warm-up calls each come first (first call, call count)
    assert timed == list("abc") + list("bca") + list("cab")
    assert len(loads) == 3 and all(len(v["s"]) == 3 for v in times.values())


def test_bad_sections_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"sections: expected a comma list of .*got \['gpu'\]"):
        perf.run(["gpu"], quick=True, out_dir=str(tmp_path))
    assert not os.listdir(tmp_path)


def test_conversion_child_reports_time_and_memory(tmp_path):
    from keras_mixer.weights import checkpoint_shapes

    rng = np.random.default_rng(0)
    tokens = (32 // perf.TINY["patch_size"]) ** 2
    path = str(tmp_path / "tiny.npz")
    np.savez(path, **{k: rng.standard_normal(s, dtype=np.float32)
                      for k, s in checkpoint_shapes(perf.TINY, tokens, 1000).items()})
    out = pm.conversion_child({"variant": perf.TINY, "weights": path})
    assert out["seconds"] > 0 and out["peak_rss_mib"] >= out["base_rss_mib"] > 0
    assert out["params"] == sum(int(np.prod(s)) for s in
                                checkpoint_shapes(perf.TINY, tokens, 1000).values())


def test_quick_run_measures_every_mode_and_writes_the_table(tmp_path):
    results = perf.run(["infer", "profile"], quick=True, out_dir=str(tmp_path))
    rows = results["infer"]["rows"]
    assert [(r["variant"], r["batch"]) for r in rows] == [("tiny", 1), ("tiny", 2)]
    for row in rows:
        assert set(row["modes"]) == {"eager", "predict", "tf.function", "xla", "jax_jit"}
        assert all(m["images_s"]["min"] > 0 for m in row["modes"].values())
        # The GEMM probes are timed in the same rounds and are not model modes.
        assert row["peak_gflops"]["min"] > 0
        assert all(m["peak_fraction"]["median"] > 0 for m in row["modes"].values())
    assert results["profile"]["xla"]["top"] and results["profile"]["graph"]["top"]
    with open(tmp_path / "perf_quick.json") as f:
        assert json.load(f)["infer"]["rows"] == json.loads(json.dumps(rows))
    text = (tmp_path / "perf_quick.md").read_text()
    assert "## Inference throughput" in text and "## Op-level profile" in text
    assert "| tiny | 2 |" in text


def test_block_parts_count_the_model_flops_of_the_blocks():
    config, size, batch = perf.TINY, 32, 3
    parts = pm.block_part_fns(config, size, batch)
    assert tuple(parts) == pm.BLOCK_PARTS
    tokens = (size // config["patch_size"]) ** 2
    stem_and_head = tokens * config["patch_size"] ** 2 * 3 * config["hidden_dim"] \
        + config["hidden_dim"] * 1000
    blocks = 2 * batch * (pm.model_macs(config, size) - stem_and_head)
    flops = {k: f for k, (_, f) in parts.items()}
    assert flops["block"] == blocks == flops["token GEMMs"] + flops["channel GEMMs"]
    assert flops["token MLP"] == flops["token GEMMs"]
    for fn, _ in parts.values():
        assert np.isfinite(fn())


def test_quick_parts_section_splits_the_block_time(tmp_path):
    results = perf.run(["parts"], quick=True, out_dir=str(tmp_path))
    s = results["parts"]
    assert set(s["parts"]) == set(pm.BLOCK_PARTS)
    assert all(v["ms"]["min"] > 0 and v["peak_fraction"]["median"] > 0
               for v in s["parts"].values())
    assert s["parts"]["block"]["share_of_block"]["median"] == 1.0
    text = (tmp_path / "perf_quick.md").read_text()
    assert "## Where the block time goes: tiny batch 2" in text
    assert "| channel GEMMs |" in text and "Block time outside the GEMMs" in text


def test_quick_tflite_section_times_every_mode_at_each_thread_count(tmp_path):
    out = perf.section_tflite(dict(perf.QUICK, rounds=1), str(tmp_path))
    modes = ("fp32", "fp16", "dynamic", "int8")
    assert set(out["latency_ms"]) == {f"{m} {t}t" for m in modes for t in (1, 2)}
    assert all(v["min"] > 0 for v in out["latency_ms"].values())
    assert out["speedup_vs_fp32"]["fp32 2t"]["median"] == 1.0
    assert out["bytes"]["fp16"] < out["bytes"]["fp32"]
    assert set(out["xnnpack_partitions"]) == set(modes)


def test_authors_flax_model_gives_our_logits_and_is_timed_beside_it(tmp_path):
    """benchmarks/flax_reference.py: the authors' published Flax module and
    keras_mixer on JAX load one authors'-layout checkpoint and agree (the
    script raises otherwise); both are then timed with the GEMM probes."""
    import subprocess

    pytest.importorskip("flax")  # in the test extra; the check needs the authors' code
    script = os.path.join(os.path.dirname(perf.__file__), "flax_reference.py")
    env = dict(os.environ, KERAS_BACKEND="jax")
    done = subprocess.run([sys.executable, script, "--quick", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "flax_reference_quick.json") as f:
        r = json.load(f)
    assert r["max_logit_diff"] <= 1e-4 and r["logit_scale"] > 0.01  # non-trivial logits
    assert set(r["models"]) == {"authors' flax", "keras_mixer jax"}
    assert all(m["images_s"]["min"] > 0 for m in r["models"].values())
    assert "| authors' flax |" in (tmp_path / "flax_reference_quick.md").read_text()
