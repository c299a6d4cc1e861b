package com.kerasmixer.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import com.kerasmixer.demo.core.Fixtures.expectError

/**
 * core/Resize.kt against TensorFlow: resize_golden.json holds what
 * `keras_mixer.preprocessing.eval_resize_crop` gives for two random images
 * (tests/test_android_contract.py writes it and checks it is still current).
 */
class ResizeTest {
    private val golden = Json.parse(Fixtures.resource("resize_golden.json")) as Map<*, *>

    /** Images of the golden file, by name: (width, height, ARGB pixels). */
    private val images = (golden["images"] as List<*>).map { it as Map<*, *> }.associate { image ->
        val rgb = (image["rgb"] as List<*>).map { (it as Long).toInt() }
        val argb = IntArray(rgb.size / 3) { i ->
            // A varying alpha the resize must ignore.
            ((i * 37) and 0xFF shl 24) or (rgb[i * 3] shl 16) or (rgb[i * 3 + 1] shl 8) or rgb[i * 3 + 2]
        }
        image["name"] to Triple(int(image["width"]), int(image["height"]), argb)
    }

    private fun int(value: Any?) = (value as Long).toInt()

    @Test
    fun matchesTensorFlowForBothInterpolationsAndCropFractions() {
        val cases = (golden["cases"] as List<*>).map { it as Map<*, *> }
        assertEquals(8, cases.size)
        for (case in cases) {
            val (srcWidth, srcHeight, argb) = images.getValue(case["image"])
            val preprocessing = Preprocessing((case["crop_fraction"] as Number).toDouble(),
                Interpolation.fromName(case["interpolation"], "interpolation"))
            val width = int(case["width"])
            val height = int(case["height"])
            val got = Resize.resizeCrop(argb, srcWidth, srcHeight, width, height, preprocessing)
            val want = (case["rgb"] as List<*>).map { (it as Number).toFloat() }
            assertEquals(want.size, got.size)
            for (i in want.indices) {
                // Measured: 0 (float32 bit for bit) on x86-64, JDK 17.
                assertEquals("${case["image"]} ${case["interpolation"]} ${case["crop_fraction"]}, " +
                    "pixel ${i / 3 % width}, ${i / 3 / width}, channel ${i % 3}", want[i], got[i], 1e-3f)
            }
        }
    }

    @Test
    fun sameSizeIsTheIdentityInRgbOrder() {
        // Crop fraction 1 on a 6x4 image for a 6x4 model: no resize, no crop.
        val argb = IntArray(24) { i -> (0x80 shl 24) or ((10 * i) shl 16) or ((255 - 10 * i) shl 8) or (i % 3) }
        for (interpolation in Interpolation.values()) {
            val got = Resize.resizeCrop(argb, 6, 4, 6, 4, Preprocessing(1.0, interpolation))
            for (i in 0 until 24) {
                assertEquals(listOf(10f * i, 255f - 10 * i, (i % 3).toFloat()), listOf(got[i * 3], got[i * 3 + 1], got[i * 3 + 2]))
            }
        }
    }

    @Test
    fun flatImagesStayFlat() {
        // Weights sum to 1 everywhere, borders included.
        val argb = IntArray(7 * 5) { 0xFF336699.toInt() }
        for (interpolation in Interpolation.values()) {
            val got = Resize.resizeCrop(argb, 7, 5, 4, 3, Preprocessing(0.5, interpolation))
            for (i in got.indices) assertEquals(floatArrayOf(51f, 102f, 153f)[i % 3], got[i], 1e-4f)
        }
    }

    @Test
    fun planSizesArePythons() {
        val plans = (golden["plans"] as List<*>).map { it as Map<*, *> }
        assertTrue(plans.isNotEmpty())
        for (plan in plans) {
            val src = (plan["src"] as List<*>).map { int(it) }
            val size = (plan["size"] as List<*>).map { int(it) }
            val scaled = (plan["scaled"] as List<*>).map { int(it) }
            val p = ResizePlan.of(src[0], src[1], size[0], size[1], (plan["crop_fraction"] as Number).toDouble())
            assertEquals("$plan", scaled, listOf(p.scaledWidth, p.scaledHeight))
            assertEquals(listOf((scaled[0] - size[0]) / 2, (scaled[1] - size[1]) / 2), listOf(p.left, p.top))
        }
    }

    @Test
    fun resizePlanFollowsTheCropFraction() {
        // 256x256 -> no resize at 224 and the paper's 0.875, centre crop at (16, 16).
        checkPlan(ResizePlan.of(256, 256, 224, 224, 0.875), 256, 256, 16, 16)
        // 640x480: shorter side to 256 (x 0.5333), width ceil(341.33) = 342.
        checkPlan(ResizePlan.of(640, 480, 224, 224, 0.875), 342, 256, 59, 16)
        // Portrait 480x640.
        checkPlan(ResizePlan.of(480, 640, 224, 224, 0.875), 256, 342, 16, 59)
        // timm's 0.95: shorter side to ceil(224 / 0.95) = 236.
        checkPlan(ResizePlan.of(640, 480, 224, 224, 0.95), 315, 236, 45, 6)
        // The tiny 32x32 model: 100x50 -> scale 32 / 0.875 / 50, 74x37.
        checkPlan(ResizePlan.of(100, 50, 32, 32, 0.875), 74, 37, 21, 2)
        expectError("image: expected a non-empty image; got 0x10") { ResizePlan.of(0, 10, 32, 32, 0.875) }
        expectError("cropFraction: expected a number in (0, 1]; got 1.5") { ResizePlan.of(10, 10, 8, 8, 1.5) }
        expectError("cropFraction: expected a number in (0, 1]; got 0.0") { ResizePlan.of(10, 10, 8, 8, 0.0) }
    }

    @Test
    fun wrongPixelCountIsRefused() {
        expectError("argb: expected 12 ints for 4x3; got 10") {
            Resize.resizeCrop(IntArray(10), 4, 3, 2, 2, Preprocessing.DEFAULT)
        }
    }

    private fun checkPlan(p: ResizePlan, w: Int, h: Int, left: Int, top: Int) {
        assertEquals(listOf(w, h, left, top), listOf(p.scaledWidth, p.scaledHeight, p.left, p.top))
    }
}
