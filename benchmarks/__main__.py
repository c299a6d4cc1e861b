"""python -m benchmarks SECTION [SECTION...] [--quick]

Measures each section and writes benchmarks/results/<section>.{json,md}
(--quick: a tiny model, in seconds, to results/quick/). --render rewrites the
markdown from the JSON without measuring; --list names the sections.
"""

import argparse
import importlib
import json
import os
import sys
import time

from . import harness

# Section -> module, imported when used; `all` runs them in this order.
SECTIONS = {
    "gemm": "benchmarks.gemm",
    "infer": "benchmarks.infer",
    "train_step": "benchmarks.train_step",
    "tflite": "benchmarks.tflite",
    "saved_model": "benchmarks.saved_model",
    "server": "benchmarks.server",
    "convert": "benchmarks.convert",
    "profile": "benchmarks.profile",
    "tokenmix": "benchmarks.tokenmix",
    "parts": "benchmarks.parts",
    "flax_reference": "benchmarks.flax_reference",
    "train_default": "benchmarks.train_default",
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help="sections to run (or render), 'all' for every one")
    parser.add_argument("--quick", action="store_true", help="tiny model and sizes: a harness check")
    parser.add_argument("--list", action="store_true", help="name the sections and stop")
    parser.add_argument("--render", action="store_true",
                        help="rewrite the markdown from the JSON (default: every JSON in --out)")
    parser.add_argument("--out", help="results folder (default: benchmarks/results, "
                                      "with --quick benchmarks/results/quick)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="S",
                        help="wait up to S s for the 1-min load average to fall below 1")
    args = parser.parse_args(argv)
    sections = list(SECTIONS) if args.sections == ["all"] else args.sections
    for name in sections:
        if name not in SECTIONS:
            parser.error(f"SECTION: expected 'all' or some of {', '.join(SECTIONS)}; got {name!r}")
    if args.list:
        for name, module in SECTIONS.items():
            print(f"{name:15} {importlib.import_module(module).__doc__.splitlines()[0]}")
        return
    out = args.out or os.path.join(harness.RESULTS, "quick" if args.quick else "")
    if args.render:
        _render(sections or [s for s in SECTIONS if os.path.exists(_json(out, s))], out, parser)
        return
    if not sections:
        parser.error("SECTION: expected at least one (or --list, --render); got none")
    for name in sections:
        _wait_idle(args.wait_idle)
        print(_measure(name, quick=args.quick, out=out, argv=argv), flush=True)


def _render(sections, out, parser):
    """Rewrites each section's markdown (and JSON, unchanged) from its JSON."""
    for name in sections:
        if not os.path.exists(_json(out, name)):
            parser.error(f"SECTION: no results to render for {name!r}: {_json(out, name)} is missing")
    for name in sections:
        with open(_json(out, name), encoding="utf-8") as f:
            data = json.load(f)
        harness.write_results(name, data, _module(name).render(data), out_dir=out)


def _measure(name, *, quick, out, argv):
    """Runs one section, writes its results and returns its markdown."""
    before, start = os.getloadavg()[0], time.time()
    print(f"[{name}] 1-min load {before:.2f}", flush=True)
    data = {"machine": harness.machine_info(), **_module(name).run(quick=quick)}
    data.update(command=" ".join(["python -m benchmarks", *argv]),
                utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                wall_s=round(time.time() - start, 1), loads=[before, os.getloadavg()[0]])
    markdown = _module(name).render(data)
    harness.write_results(name, data, markdown, out_dir=out)
    return markdown


def _json(out, name):
    return os.path.join(out, name + ".json")


def _module(name):
    return importlib.import_module(SECTIONS[name])


def _wait_idle(limit_s):
    start = time.time()
    while os.getloadavg()[0] >= 1 and time.time() - start < limit_s:
        time.sleep(15)


if __name__ == "__main__":
    main()
