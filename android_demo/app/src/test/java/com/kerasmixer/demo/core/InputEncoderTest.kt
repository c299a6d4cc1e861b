package com.kerasmixer.demo.core

import org.junit.Assert.assertEquals
import org.junit.Test
import com.kerasmixer.demo.core.Fixtures.expectError

class InputEncoderTest {
    // Distinct R, G, B per pixel, with fractions as the resize gives them.
    private fun pixels(n: Int) = FloatArray(n * 3) { i -> ((i * 7 + i / 3) % 255) + (i % 4) * 0.25f }

    @Test
    fun float32KeepsTheValuesInOrder() {
        val c = Fixtures.contract("float")
        val enc = InputEncoder(c)
        val px = pixels(32 * 32)
        val buf = enc.newBuffer()
        enc.encode(px, 32, 32, buf)
        assertEquals(32 * 32 * 3 * 4, buf.capacity())
        for (i in px.indices) assertEquals(px[i], buf.getFloat(i * 4), 0f)
        enc.encode(FloatArray(32 * 32 * 3) { 255f }, 32, 32, buf)
        assertEquals(255f, buf.getFloat(0), 0f)
    }

    @Test
    fun int8UsesTheFilesScaleAndZeroPoint() {
        // Exported int8 input: scale 1.0, zero point -128, so q = rint(pixel) - 128.
        val c = Fixtures.contract("int8")
        val enc = InputEncoder(c)
        val px = pixels(32 * 32)
        val buf = enc.newBuffer()
        enc.encode(px, 32, 32, buf)
        for (i in px.indices) assertEquals(Math.rint(px[i].toDouble()).toInt() - 128, buf.get(i).toInt())
    }

    @Test
    fun uint8KeepsPixelValues() {
        val c = Fixtures.contract("uint8")
        val enc = InputEncoder(c)
        val px = pixels(32 * 32)
        val buf = enc.newBuffer()
        enc.encode(px, 32, 32, buf)
        for (i in px.indices) assertEquals(Math.rint(px[i].toDouble()).toInt(), buf.get(i).toInt() and 0xFF)
    }

    @Test
    fun quantizationRoundsHalfToEvenAndClamps() {
        // q = rint(v / 2 + 3): 1 -> 3.5 -> 4, 3 -> 4.5 -> 4, 2.5 -> 4.25 -> 4, 255 -> 130.5 -> 130 -> clamped to 127.
        val c = Fixtures.quantized("int8", 2.0, 3)
        val enc = InputEncoder(c)
        val buf = enc.newBuffer()
        enc.encode(floatArrayOf(1f, 3f, 2.5f, 255f, 255f, 255f) + FloatArray(6), 2, 2, buf)
        assertEquals(listOf(4, 4, 4, 127, 127, 127, 3), (0 until 7).map { buf.get(it).toInt() })
        // uint8 with a negative-going zero point clamps at 0.
        val u = Fixtures.quantized("uint8", 1.0, -10)
        val ub = InputEncoder(u).newBuffer()
        InputEncoder(u).encode(floatArrayOf(5f, 0f, 15f) + FloatArray(9), 2, 2, ub)
        assertEquals(listOf(0, 0, 5), (0 until 3).map { ub.get(it).toInt() and 0xFF })
    }

    @Test
    fun wrongSizesAreRefused() {
        val enc = InputEncoder(Fixtures.contract("float"))
        expectError("pixels: the model takes 32x32 images; got 16x16") { enc.encode(FloatArray(768), 16, 16, enc.newBuffer()) }
        expectError("pixels: expected 3072 floats (RGB) for 32x32; got 10") { enc.encode(FloatArray(10), 32, 32, enc.newBuffer()) }
        expectError("out: expected a buffer of 12288 bytes for the input tensor; got 3072") {
            enc.encode(FloatArray(3072), 32, 32, InputEncoder(Fixtures.contract("int8")).newBuffer())
        }
    }
}
