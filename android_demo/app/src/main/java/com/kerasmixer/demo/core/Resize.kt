package com.kerasmixer.demo.core

/** Resampling filters, by their names in the sidecar's "preprocessing.interpolation". */
enum class Interpolation(val jsonName: String) {
    BICUBIC("bicubic"),
    BILINEAR("bilinear");

    companion object {
        fun fromName(name: Any?, field: String): Interpolation = values().firstOrNull { it.jsonName == name }
            ?: throw IllegalArgumentException("metadata $field: expected one of ${values().map { it.jsonName }}; " +
                "got ${if (name is String) "'$name'" else name.toString()}")
    }
}

/**
 * Where to resize and crop an image so the model sees what the checkpoint's
 * evaluation transform gives (`keras_mixer.preprocessing.eval_resize_crop`):
 * scale so that the H x W crop is `cropFraction` of the resized image
 * (0.875: 256 -> 224), then take the centre. The arithmetic is float32 in
 * the Python side's order, so both round to the same size (in double, a
 * 36x35 image at 0.9 would give 256 columns instead of 257).
 */
class ResizePlan(val scaledWidth: Int, val scaledHeight: Int, val left: Int, val top: Int) {
    companion object {
        fun of(srcWidth: Int, srcHeight: Int, width: Int, height: Int, cropFraction: Double): ResizePlan {
            require(srcWidth > 0 && srcHeight > 0) {
                "image: expected a non-empty image; got ${srcWidth}x$srcHeight"
            }
            require(cropFraction > 0.0 && cropFraction <= 1.0) {
                "cropFraction: expected a number in (0, 1]; got $cropFraction"
            }
            val crop = cropFraction.toFloat()
            val scale = Math.max(height / crop / srcHeight, width / crop / srcWidth)
            val w = Math.ceil((srcWidth * scale).toDouble()).toInt()
            val h = Math.ceil((srcHeight * scale).toDouble()).toInt()
            return ResizePlan(w, h, (w - width) / 2, (h - height) / 2)
        }
    }
}

/**
 * The checkpoint's resize and centre crop on the app's pixels, giving the
 * floats `keras_mixer.preprocessing.eval_resize_crop` gives in Python. That
 * runs `tf.image.resize(..., antialias=False)`, so this is TensorFlow's
 * ResizeBilinear / ResizeBicubic with half-pixel centres, step by step in
 * float32: bilinear with TF's lerp order; bicubic with the Keys kernel
 * (a = -0.5) read from TF's 1024-step table, taps outside the image dropped
 * and the rest renormalized, rows interpolated before columns. Only the
 * crop is computed: each output pixel depends on its own position alone.
 */
object Resize {
    private const val TABLE_SIZE = 1024

    // TF's InitCoeffsTable(-0.5): kernel weights at distance i / 1024 (even
    // slots) and 1 + i / 1024 (odd slots), computed in double, stored as float.
    private val cubic = FloatArray((TABLE_SIZE + 1) * 2).also { table ->
        val a = -0.5
        for (i in 0..TABLE_SIZE) {
            var x = (i * 1.0 / TABLE_SIZE).toFloat()
            table[i * 2] = (((a + 2) * x - (a + 3)) * x * x + 1).toFloat()
            x = (x + 1.0).toFloat()
            table[i * 2 + 1] = (((a * x - 5 * a) * x + 8 * a) * x - 4 * a).toFloat()
        }
    }

    /**
     * `argb`: the srcWidth x srcHeight image, row-major 0xAARRGGBB (alpha
     * ignored). Returns the `width` x `height` crop, row-major, as R, G, B
     * floats per pixel, clipped to 0-255.
     */
    fun resizeCrop(argb: IntArray, srcWidth: Int, srcHeight: Int, width: Int, height: Int,
                   preprocessing: Preprocessing): FloatArray {
        require(argb.size == srcWidth * srcHeight) {
            "argb: expected ${srcWidth * srcHeight} ints for ${srcWidth}x$srcHeight; got ${argb.size}"
        }
        val plan = ResizePlan.of(srcWidth, srcHeight, width, height, preprocessing.cropFraction)
        val taps = if (preprocessing.interpolation == Interpolation.BICUBIC) 4 else 2
        val xs = Axis(taps, srcWidth, plan.scaledWidth, plan.left, width)
        val ys = Axis(taps, srcHeight, plan.scaledHeight, plan.top, height)
        val out = FloatArray(width * height * 3)
        for (y in 0 until height) {
            for (x in 0 until width) {
                for (c in 0..2) {
                    val shift = 16 - 8 * c
                    val v = if (taps == 4) bicubic(argb, srcWidth, xs, x, ys, y, shift)
                            else bilinear(argb, srcWidth, xs, x, ys, y, shift)
                    out[(y * width + x) * 3 + c] = Math.min(255f, Math.max(0f, v))
                }
            }
        }
        return out
    }

    // TF's compute_lerp: top = tl + (tr - tl) * x_lerp, the same below, then along y.
    private fun bilinear(argb: IntArray, stride: Int, xs: Axis, x: Int, ys: Axis, y: Int, shift: Int): Float {
        val x0 = xs.index[x * 2]
        val x1 = xs.index[x * 2 + 1]
        val row0 = ys.index[y * 2] * stride
        val row1 = ys.index[y * 2 + 1] * stride
        val xl = xs.weight[x * 2]
        val top = channel(argb[row0 + x0], shift) +
            (channel(argb[row0 + x1], shift) - channel(argb[row0 + x0], shift)) * xl
        val bottom = channel(argb[row1 + x0], shift) +
            (channel(argb[row1 + x1], shift) - channel(argb[row1 + x0], shift)) * xl
        return top + (bottom - top) * ys.weight[y * 2]
    }

    // TF's Interpolate1D along y for each of the 4 columns, then along x, summed left to right.
    private fun bicubic(argb: IntArray, stride: Int, xs: Axis, x: Int, ys: Axis, y: Int, shift: Int): Float {
        var sum = 0f
        for (i in 0..3) {
            val column = xs.index[x * 4 + i]
            var v = 0f
            for (j in 0..3) {
                v += channel(argb[ys.index[y * 4 + j] * stride + column], shift) * ys.weight[y * 4 + j]
            }
            sum += v * xs.weight[x * 4 + i]
        }
        return sum
    }

    private fun channel(pixel: Int, shift: Int): Float = ((pixel shr shift) and 0xFF).toFloat()

    /**
     * Source indices and weights along one axis for the `count` outputs from
     * `start` of a resize from `srcSize` to `scaledSize`. Bilinear (2 taps):
     * TF's lower and upper index and the lerp (second weight slot unused).
     * Bicubic (4 taps): TF's GetWeightsAndIndices with use_keys_cubic.
     */
    private class Axis(taps: Int, srcSize: Int, scaledSize: Int, start: Int, count: Int) {
        val index = IntArray(count * taps)
        val weight = FloatArray(count * taps)

        init {
            val scale = srcSize.toFloat() / scaledSize
            for (i in 0 until count) {
                // Half-pixel centres: TF's HalfPixelScaler.
                val at = (start + i + 0.5f) * scale - 0.5f
                val floor = Math.floor(at.toDouble()).toFloat()
                if (taps == 2) {
                    index[i * 2] = Math.max(floor.toInt(), 0)
                    index[i * 2 + 1] = Math.min(Math.ceil(at.toDouble()).toInt(), srcSize - 1)
                    weight[i * 2] = at - floor
                } else {
                    cubicTaps(at, floor.toInt(), srcSize, i * 4)
                }
            }
        }

        private fun cubicTaps(at: Float, base: Int, srcSize: Int, k: Int) {
            val offset = Math.rint(((at - base) * TABLE_SIZE).toDouble()).toInt()
            val slots = intArrayOf(offset * 2 + 1, offset * 2, (TABLE_SIZE - offset) * 2, (TABLE_SIZE - offset) * 2 + 1)
            var sum = 0f
            for (j in 0..3) {
                val want = base - 1 + j
                index[k + j] = Math.min(srcSize - 1, Math.max(0, want))
                weight[k + j] = if (index[k + j] == want) cubic[slots[j]] else 0f
                sum += weight[k + j]
            }
            if (Math.abs(sum) >= 1000f * java.lang.Float.MIN_NORMAL) {
                val inverse = 1f / sum
                for (j in 0..3) weight[k + j] *= inverse
            }
        }
    }
}
