package com.kerasmixer.demo.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Resized pixels -> the model's input tensor, exactly as the contract says:
 * batch 1, H x W from `input.shape`, RGB order, values 0-255 (the model
 * rescales to [-1, 1] itself), written as float32, or quantized to
 * uint8/int8 with the input's own scale and zero point:
 * q = round(pixel / scale + zero_point), clamped to the dtype's range.
 * Rounding is half-to-even, as NumPy's `np.round` in `export/verify.py`.
 */
class InputEncoder(private val contract: ModelContract) {
    private val spec = contract.input
    // The dtype's range, for clamping quantized values.
    private val min = spec.dtype.min.toDouble()
    private val max = spec.dtype.max.toDouble()

    /** A direct buffer in native byte order, the size of the input tensor. */
    fun newBuffer(): ByteBuffer = ByteBuffer.allocateDirect(spec.bytes).order(ByteOrder.nativeOrder())

    /**
     * Writes `rgb` (row-major, R, G, B per pixel, 0-255, as Resize.resizeCrop
     * gives) into `out`, which is rewound first.
     */
    fun encode(rgb: FloatArray, width: Int, height: Int, out: ByteBuffer) {
        require(width == contract.width && height == contract.height) {
            "pixels: the model takes ${contract.width}x${contract.height} images; got ${width}x$height"
        }
        require(rgb.size == width * height * 3) {
            "pixels: expected ${width * height * 3} floats (RGB) for ${width}x$height; got ${rgb.size}"
        }
        require(out.capacity() == spec.bytes) {
            "out: expected a buffer of ${spec.bytes} bytes for the input tensor; got ${out.capacity()}"
        }
        out.rewind()
        val q = spec.quantization
        for (v in rgb) {
            if (q == null) {
                out.putFloat(v)
            } else {
                val level = Math.rint(v / q.scale + q.zeroPoint)
                out.put(Math.max(min, Math.min(max, level)).toInt().toByte())
            }
        }
        out.rewind()
    }
}
