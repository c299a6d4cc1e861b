"""Runs exported .tflite files the way the Android demo does, in whatever
Python runs this file: on ARM64, the aarch64 Python that tests/arm64/setup.sh
builds (under qemu on an x86_64 machine). Needs only NumPy and ai_edge_litert:
no keras_mixer, Keras or TensorFlow (none of them is in that environment).

    python tests/arm64/runner.py JOBS.json REPORT.json

JOBS.json: {"threads": int, "jobs": [{"model": ".tflite", "inputs": ".npy",
"outputs": ".npy", "raw": bool, "pixels": ".npy" or null}, ...]}.
Each job reads its images (float32 (N, H, W, 3) RGB 0-255 as the model takes
them, or with "raw" uint8 (N, h, w, 3) images of any size, which are first
resized and cropped as the sidecar's "preprocessing" says, with the app's
algorithm: android_demo core/Resize.kt, ported here to NumPy float32, written
to "pixels"), feeds them one at a time (the files have batch 1) encoded as the
sidecar says (core/InputEncoder.kt), dequantizes the outputs as the sidecar
says and writes them (float32 (N, classes)) to "outputs". Arrays are .npy
without pickle. REPORT.json gets the platform, the versions and, per job, the
interpreter's own input/output details (to check against the sidecar).
"""

import json
import os
import platform
import sys

import numpy as np

TABLE_SIZE = 1024  # Resize.kt / TensorFlow's bicubic coefficient table


def main(argv):
    if len(argv) != 2:
        sys.exit(f"usage: runner.py JOBS.json REPORT.json; got {len(argv)} arguments")
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    threads = spec.get("threads", 1)
    if not (isinstance(threads, int) and threads >= 1):
        sys.exit(f"threads: expected an int >= 1; got {threads!r}")
    from ai_edge_litert import interpreter as litert

    report = {"machine": platform.machine(), "python": platform.python_version(),
              "numpy": np.__version__, "litert": _version("ai_edge_litert"), "jobs": []}
    for job in spec["jobs"]:
        report["jobs"].append(run_job(job, threads, litert.Interpreter))
    with open(argv[1] + ".tmp", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    os.replace(argv[1] + ".tmp", argv[1])


def _version(dist):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist.replace("_", "-"))
    except PackageNotFoundError:
        return None


def run_job(job, threads, interpreter_class):
    contract = read_sidecar(job["model"])
    interp = interpreter_class(model_path=job["model"], num_threads=threads)
    interp.allocate_tensors()
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    images = np.load(job["inputs"], allow_pickle=False)
    _, height, width, _ = contract["input"]["shape"]
    if job.get("raw"):
        images = np.stack([resize_crop(image, width, height, contract.get("preprocessing"))
                           for image in images])
        if job.get("pixels"):
            np.save(job["pixels"], images, allow_pickle=False)
    outputs = []
    for image in images:
        interp.set_tensor(inp["index"], encode(image, contract["input"])[None])
        interp.invoke()
        outputs.append(decode(interp.get_tensor(out["index"])[0], contract["output"]))
    np.save(job["outputs"], np.stack(outputs).astype(np.float32), allow_pickle=False)
    return {"model": os.path.basename(job["model"]), "images": len(images),
            "input": _details(inp), "output": _details(out)}


def _details(detail):
    scale, zero_point = detail["quantization"]
    return {"shape": [int(d) for d in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None}


def read_sidecar(model_path):
    """The sidecar next to a .tflite: out/mixer.tflite -> out/mixer.json."""
    path = model_path[:-len(".tflite")] + ".json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def encode(rgb, spec):
    """InputEncoder.kt: float32 as is, else round half-to-even(v / scale + zp), clamped."""
    rgb = np.asarray(rgb, np.float32)
    if spec["quantization"] is None:
        return rgb
    q, dtype = spec["quantization"], np.dtype(spec["dtype"])
    level = np.rint(rgb.astype(np.float64) / q["scale"] + q["zero_point"])
    return np.clip(level, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)


def decode(y, spec):
    q = spec["quantization"]
    if q is None:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - q["zero_point"]) * np.float32(q["scale"])).astype(np.float32)


def resize_crop(image, width, height, preprocessing):
    """Resize.kt's resizeCrop on one uint8 (h, w, 3) image: the model's
    width x height centre crop of the image scaled so the crop is
    `crop_fraction` of it, float32 step by step in Resize.kt's order."""
    preprocessing = preprocessing or {"crop_fraction": 0.875, "interpolation": "bicubic"}
    src = np.asarray(image).astype(np.float32)
    src_h, src_w = src.shape[:2]
    scaled_w, scaled_h, left, top = resize_plan(src_w, src_h, width, height,
                                                preprocessing["crop_fraction"])
    taps = 4 if preprocessing["interpolation"] == "bicubic" else 2
    xi, xw = axis(taps, src_w, scaled_w, left, width)
    yi, yw = axis(taps, src_h, scaled_h, top, height)
    if taps == 2:  # TF's compute_lerp: top + (bottom - top) * y_lerp
        rows0, rows1 = src[yi[:, 0]], src[yi[:, 1]]
        xl = xw[:, 0][None, :, None]
        top_ = rows0[:, xi[:, 0]] + (rows0[:, xi[:, 1]] - rows0[:, xi[:, 0]]) * xl
        bottom = rows1[:, xi[:, 0]] + (rows1[:, xi[:, 1]] - rows1[:, xi[:, 0]]) * xl
        out = top_ + (bottom - top_) * yw[:, 0][:, None, None]
    else:  # along y for each of the 4 columns, then along x, summed in order
        out = np.zeros((height, width, 3), np.float32)
        for i in range(4):
            cols = src[:, xi[:, i]]  # (src_h, width, 3)
            v = np.zeros((height, width, 3), np.float32)
            for j in range(4):
                v = v + cols[yi[:, j]] * yw[:, j][:, None, None]
            out = out + v * xw[:, i][None, :, None]
    return np.clip(out, np.float32(0), np.float32(255)).astype(np.float32)


def resize_plan(src_w, src_h, width, height, crop_fraction):
    """ResizePlan.of: (scaled width, scaled height, left, top), float32 arithmetic."""
    crop = np.float32(crop_fraction)
    scale = max(np.float32(height) / crop / np.float32(src_h),
                np.float32(width) / crop / np.float32(src_w))
    w = int(np.ceil(np.float64(np.float32(src_w * scale))))
    h = int(np.ceil(np.float64(np.float32(src_h * scale))))
    return w, h, (w - width) // 2, (h - height) // 2


def _cubic_table():
    a = -0.5
    table = np.zeros((TABLE_SIZE + 1) * 2, np.float32)
    for i in range(TABLE_SIZE + 1):
        x = float(np.float32(i * 1.0 / TABLE_SIZE))
        table[i * 2] = ((a + 2) * x - (a + 3)) * x * x + 1
        x = float(np.float32(x + 1.0))
        table[i * 2 + 1] = (((a * x - 5 * a) * x + 8 * a) * x - 4 * a)
    return table


def axis(taps, src_size, scaled_size, start, count):
    """Resize.kt's Axis: (indices, weights), each (count, taps)."""
    index = np.zeros((count, taps), np.int64)
    weight = np.zeros((count, taps), np.float32)
    scale = np.float32(src_size) / np.float32(scaled_size)
    table = _cubic_table() if taps == 4 else None
    for i in range(count):
        at = (np.float32(start + i) + np.float32(0.5)) * scale - np.float32(0.5)
        floor = np.float32(np.floor(np.float64(at)))
        if taps == 2:
            index[i] = max(int(floor), 0), min(int(np.ceil(np.float64(at))), src_size - 1)
            weight[i, 0] = at - floor
            continue
        base = int(floor)
        offset = int(np.rint(np.float64(np.float32((at - np.float32(base)) * np.float32(TABLE_SIZE)))))
        slots = (offset * 2 + 1, offset * 2, (TABLE_SIZE - offset) * 2, (TABLE_SIZE - offset) * 2 + 1)
        total = np.float32(0)
        for j in range(4):
            want = base - 1 + j
            index[i, j] = min(src_size - 1, max(0, want))
            weight[i, j] = table[slots[j]] if index[i, j] == want else np.float32(0)
            total = np.float32(total + weight[i, j])
        if abs(total) >= np.float32(1000) * np.finfo(np.float32).tiny:
            inverse = np.float32(1) / total
            weight[i] = weight[i] * inverse
    return index, weight


if __name__ == "__main__":
    main(sys.argv[1:])
