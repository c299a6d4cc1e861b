package com.kerasmixer.demo.core

import org.junit.Assert.assertEquals
import org.junit.Test
import com.kerasmixer.demo.core.Fixtures.expectError

class InputEncoderTest {
    private fun pixels(n: Int) = IntArray(n) { i ->
        // Distinct R, G, B per pixel and a varying alpha the encoder must ignore.
        ((i * 7) and 0xFF shl 24) or ((i * 3 + 1) and 0xFF shl 16) or ((i * 5 + 2) and 0xFF shl 8) or ((i * 11 + 3) and 0xFF)
    }

    private fun rgb(p: Int) = intArrayOf((p shr 16) and 0xFF, (p shr 8) and 0xFF, p and 0xFF)

    @Test
    fun float32IsRgbOrder0To255() {
        val c = Fixtures.contract("float")
        val enc = InputEncoder(c)
        val px = pixels(32 * 32)
        val buf = enc.newBuffer()
        enc.encode(px, 32, 32, buf)
        assertEquals(32 * 32 * 3 * 4, buf.capacity())
        for (i in px.indices) {
            val want = rgb(px[i])
            for (ch in 0..2) assertEquals(want[ch].toFloat(), buf.getFloat((i * 3 + ch) * 4), 0f)
        }
        val white = IntArray(32 * 32) { 0xFFFFFFFF.toInt() }
        enc.encode(white, 32, 32, buf)
        assertEquals(255f, buf.getFloat(0), 0f)
    }

    @Test
    fun int8UsesTheFilesScaleAndZeroPoint() {
        // Exported int8 input: scale 1.0, zero point -128, so q = pixel - 128.
        val c = Fixtures.contract("int8")
        val enc = InputEncoder(c)
        val px = pixels(32 * 32)
        val buf = enc.newBuffer()
        enc.encode(px, 32, 32, buf)
        for (i in px.indices) {
            val want = rgb(px[i])
            for (ch in 0..2) assertEquals(want[ch] - 128, buf.get(i * 3 + ch).toInt())
        }
    }

    @Test
    fun uint8KeepsPixelValues() {
        val c = Fixtures.contract("uint8")
        val enc = InputEncoder(c)
        val px = pixels(32 * 32)
        val buf = enc.newBuffer()
        enc.encode(px, 32, 32, buf)
        for (i in px.indices) assertEquals(rgb(px[i])[2], buf.get(i * 3 + 2).toInt() and 0xFF)
    }

    @Test
    fun quantizationRoundsHalfToEvenAndClamps() {
        // q = rint(v / 2 + 3): 1 -> 3.5 -> 4, 3 -> 4.5 -> 4, 255 -> 130.5 -> 130 -> clamped to 127.
        val c = Fixtures.quantized("int8", 2.0, 3)
        val enc = InputEncoder(c)
        val buf = enc.newBuffer()
        enc.encode(intArrayOf(0x010300, 0xFFFFFF, 0, 0), 2, 2, buf)
        assertEquals(listOf(4, 4, 3, 127, 127, 127), (0 until 6).map { buf.get(it).toInt() })
        // uint8 with a negative-going zero point clamps at 0.
        val u = Fixtures.quantized("uint8", 1.0, -10)
        val ub = InputEncoder(u).newBuffer()
        InputEncoder(u).encode(intArrayOf(0x05000F, 0, 0, 0), 2, 2, ub)
        assertEquals(listOf(0, 0, 5), (0 until 3).map { ub.get(it).toInt() and 0xFF })
    }

    @Test
    fun wrongSizesAreRefused() {
        val enc = InputEncoder(Fixtures.contract("float"))
        expectError("pixels: the model takes 32x32 images; got 16x16") { enc.encode(IntArray(256), 16, 16, enc.newBuffer()) }
        expectError("pixels: expected 1024 ints for 32x32; got 10") { enc.encode(IntArray(10), 32, 32, enc.newBuffer()) }
        expectError("out: expected a buffer of 12288 bytes for the input tensor; got 3072") {
            enc.encode(IntArray(1024), 32, 32, InputEncoder(Fixtures.contract("int8")).newBuffer())
        }
    }

    @Test
    fun resizePlanMatchesThePapersEvalTransform() {
        // 256x256 -> no resize at 224, centre crop at (16, 16).
        checkPlan(ResizePlan.of(256, 256, 224, 224), 256, 256, 16, 16)
        // 640x480: shorter side to 256 (x 0.5333), width ceil(341.33) = 342.
        checkPlan(ResizePlan.of(640, 480, 224, 224), 342, 256, 59, 16)
        // Portrait 480x640.
        checkPlan(ResizePlan.of(480, 640, 224, 224), 256, 342, 16, 59)
        // The tiny 32x32 model: 100x50 -> scale 32 / 0.875 / 50, 74x37.
        checkPlan(ResizePlan.of(100, 50, 32, 32), 74, 37, 21, 2)
        expectError("image: expected a non-empty image; got 0x10") { ResizePlan.of(0, 10, 32, 32) }
    }

    private fun checkPlan(p: ResizePlan, w: Int, h: Int, left: Int, top: Int) {
        assertEquals(listOf(w, h, left, top), listOf(p.scaledWidth, p.scaledHeight, p.left, p.top))
    }
}
