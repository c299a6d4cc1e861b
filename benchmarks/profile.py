"""Op-level profile of one forward step, TF graph and XLA.

Self time per op type from a tf.profiler trace: where the time goes, data
movement (the token-mixing transposes) included.
"""

import collections
import glob
import re
import tempfile
import time

from . import harness

FULL = dict(variant="B/16", size=224, batch=8)
QUICK = dict(variant="quick", size=32, batch=2)
# Runtime frames that wrap the ops (their self time is dispatch or waiting).
WRAPPERS = ("TFE_", "Eager", "__inference", "<", "Run", "Process", "ExecuteAsyncOnStream",
            "BlockUntilReady", "FunctionRun", "ExecutorDoneCallback", "ThreadpoolListener")
TOP_OPS = 12
# Op types that only move data: the token-mixing transposes would show up here.
MOVES = re.compile(r"transpose|copy|Transpose|Copy|Reshape|Gather|concat|slice", re.I)


def run(*, quick=False):
    s = QUICK if quick else FULL
    model, x = harness.build(s["variant"], s["size"]), harness.images(s["batch"], s["size"])
    return {"variant": s["variant"], "batch": s["batch"],
            "graph": profile_step(model, x, jit_compile=False),
            "xla": profile_step(model, x, jit_compile=True)}


def profile_step(model, x, *, jit_compile):
    """Self time per op type of one warm `model(x)` call traced by tf.profiler."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    fn = tf.function(lambda t: model(t, training=False), jit_compile=jit_compile)
    x = tf.constant(x)
    fn(x).numpy()
    fn(x).numpy()  # warm: compiled, caches filled
    with tempfile.TemporaryDirectory() as tmp:
        tf.profiler.experimental.start(tmp)
        start = time.perf_counter()
        fn(x).numpy()
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    return aggregate(space, wall)


def aggregate(space, wall):
    self_ps, counts = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for name, ps in self_times(line, plane.event_metadata):
                op = op_type(name)
                if op:
                    self_ps[op] += ps
                    counts[op] += 1
    total = sum(self_ps.values()) or 1
    ops = [{"op": op, "count": counts[op], "self_ms": ps / 1e9, "share": ps / total}
           for op, ps in self_ps.most_common()]
    moves = [o for o in ops if MOVES.search(o["op"])]
    return {"wall_ms": wall * 1e3, "ops_total_ms": total / 1e9, "top": ops[:TOP_OPS],
            "data_movement_share": sum(o["share"] for o in moves),
            "data_movement_ops": [o["op"] for o in moves]}


def self_times(line, metadata):
    """(name, self time in ps) of each event: its duration minus its children's."""
    events = sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps))
    selfs, stack = [], []  # stack of (end, index into selfs)
    for ev in events:
        while stack and stack[-1][0] <= ev.offset_ps:
            stack.pop()
        if stack:
            selfs[stack[-1][1]][1] -= ev.duration_ps
        selfs.append([metadata[ev.metadata_id].name, ev.duration_ps])
        stack.append((ev.offset_ps + ev.duration_ps, len(selfs) - 1))
    return selfs


def op_type(name):
    """'block/dense/MatMul:_MklMatMul' -> '_MklMatMul'; XLA 'fusion.12' -> 'fusion'."""
    name = name.rsplit(":", 1)[-1].strip()
    if not name or name.startswith(WRAPPERS):
        return None
    return re.sub(r"\.\d+$", "", name)


def render(data):
    out = [f"# Op-level profile, one {data['variant']} forward step, batch {data['batch']}\n"]
    for mode in ("graph", "xla"):
        p = data[mode]
        out += [f"**{mode}** (tf.function{', jit_compile=True' if mode == 'xla' else ''}): "
                f"step {p['wall_ms']:.0f} ms; op self time {p['ops_total_ms']:.0f} ms (summed "
                f"over threads); data-movement ops {p['data_movement_share']:.1%} "
                f"({', '.join(p['data_movement_ops']) or 'none'})\n"]
        out += harness.table(["op type", "count", "self ms", "share"],
                             [[o["op"], o["count"], f"{o['self_ms']:.1f}", f"{o['share']:.1%}"]
                              for o in p["top"]]) + [""]
    return "\n".join(out + [harness.footer(data)])
