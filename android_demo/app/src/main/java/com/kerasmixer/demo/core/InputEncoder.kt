package com.kerasmixer.demo.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Image pixels -> the model's input tensor, exactly as the contract says:
 * batch 1, H x W from `input.shape`, RGB order, values 0-255 (the model
 * rescales to [-1, 1] itself), written as float32, or quantized to
 * uint8/int8 with the input's own scale and zero point:
 * q = round(pixel / scale + zero_point), clamped to the dtype's range.
 * Rounding is half-to-even, as NumPy's `np.round` in `export/verify.py`.
 */
class InputEncoder(private val contract: ModelContract) {
    private val spec = contract.input

    // Quantized value of each of the 256 pixel values: one lookup per channel.
    private val table: ByteArray? = spec.quantization?.let { q ->
        ByteArray(256) { v ->
            val level = Math.rint(v / q.scale + q.zeroPoint)
            Math.max(spec.dtype.min.toDouble(), Math.min(spec.dtype.max.toDouble(), level)).toInt().toByte()
        }
    }

    /** A direct buffer in native byte order, the size of the input tensor. */
    fun newBuffer(): ByteBuffer = ByteBuffer.allocateDirect(spec.bytes).order(ByteOrder.nativeOrder())

    /**
     * Writes `argb` (row-major 0xAARRGGBB ints, as Android's Bitmap.getPixels
     * gives) into `out`, which is rewound first. Alpha is ignored.
     */
    fun encode(argb: IntArray, width: Int, height: Int, out: ByteBuffer) {
        require(width == contract.width && height == contract.height) {
            "pixels: the model takes ${contract.width}x${contract.height} images; got ${width}x$height"
        }
        require(argb.size == width * height) {
            "pixels: expected ${width * height} ints for ${width}x$height; got ${argb.size}"
        }
        require(out.capacity() == spec.bytes) {
            "out: expected a buffer of ${spec.bytes} bytes for the input tensor; got ${out.capacity()}"
        }
        out.rewind()
        val lut = table
        for (p in argb) {
            val r = (p shr 16) and 0xFF
            val g = (p shr 8) and 0xFF
            val b = p and 0xFF
            if (lut == null) {
                out.putFloat(r.toFloat()).putFloat(g.toFloat()).putFloat(b.toFloat())
            } else {
                out.put(lut[r]).put(lut[g]).put(lut[b])
            }
        }
        out.rewind()
    }
}

/**
 * Where to resize and crop an image so the model sees what the paper's
 * evaluation transform gives (`keras_mixer.preprocessing.eval_resize_crop`):
 * scale so that the crop is CROP_FRACTION of the resized image's side
 * (256 -> 224 at 224), then take the centre H x W.
 */
class ResizePlan(val scaledWidth: Int, val scaledHeight: Int, val left: Int, val top: Int) {
    companion object {
        /** Same value as keras_mixer.preprocessing.CROP_FRACTION (the contract test compares them). */
        const val CROP_FRACTION = 0.875

        fun of(srcWidth: Int, srcHeight: Int, width: Int, height: Int): ResizePlan {
            require(srcWidth > 0 && srcHeight > 0) {
                "image: expected a non-empty image; got ${srcWidth}x$srcHeight"
            }
            val scale = Math.max(height / CROP_FRACTION / srcHeight, width / CROP_FRACTION / srcWidth)
            val w = Math.ceil(srcWidth * scale).toInt()
            val h = Math.ceil(srcHeight * scale).toInt()
            return ResizePlan(w, h, (w - width) / 2, (h - height) / 2)
        }
    }
}
