package com.kerasmixer.demo.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test
import com.kerasmixer.demo.core.Fixtures.expectError

class ScoresTest {
    @Test
    fun int8OutputIsDequantizedWithTheFilesParameters() {
        // Exported int8 output: scale 1/256, zero point -128.
        val s = Scores(Fixtures.contract("int8"))
        val buf = s.newBuffer()
        val raw = byteArrayOf(-128, 127, 0, -64, 1, 2, 3, 4, 5, 6)
        buf.put(raw).rewind()
        val p = s.probabilities(buf)
        assertArrayEquals(floatArrayOf(0f, 255f / 256, 0.5f, 0.25f), p.copyOf(4), 1e-7f)
        val top = s.topK(p, 3)
        assertEquals(listOf(1, 9, 8), top.map { it.index })
        assertEquals(listOf("1", "9", "8"), top.map { it.label })
    }

    @Test
    fun uint8OutputIsReadUnsigned() {
        val s = Scores(Fixtures.quantized("uint8", 0.5, 10))
        val buf = s.newBuffer()
        buf.put(byteArrayOf(10, 255.toByte(), 12)).rewind()
        assertArrayEquals(floatArrayOf(0f, 122.5f, 1f), s.dequantize(buf), 0f)
    }

    @Test
    fun probabilitiesAreNotSoftmaxedAgain() {
        val s = Scores(Fixtures.contract("float"))
        val buf = s.newBuffer()
        val values = FloatArray(10) { it / 45f }
        for (v in values) buf.putFloat(v)
        buf.rewind()
        assertArrayEquals(values, s.probabilities(buf), 0f)
    }

    @Test
    fun logitsAreSoftmaxed() {
        val s = Scores(Fixtures.contract("logits"))
        val buf = s.newBuffer()
        val logits = floatArrayOf(1f, 2f, 3f, 1000f, -5f, 0f, 0f, 0f, 0f, 0f)
        for (v in logits) buf.putFloat(v)
        buf.rewind()
        val p = s.probabilities(buf)
        assertEquals(1.0, p.sum().toDouble(), 1e-6)
        assertEquals(1f, p[3], 1e-6f) // no overflow at 1000
        val q = Scores.softmax(floatArrayOf(0f, Math.log(3.0).toFloat()))
        assertArrayEquals(floatArrayOf(0.25f, 0.75f), q, 1e-6f)
    }

    @Test
    fun topKIsStableAndChecksK() {
        val s = Scores(Fixtures.contract("float"))
        val p = floatArrayOf(0.1f, 0.3f, 0.1f, 0.3f, 0f, 0f, 0.2f, 0f, 0f, 0f)
        assertEquals(listOf(1, 3, 6, 0, 2), s.topK(p, 5).map { it.index })
        assertEquals(10, s.topK(p, 10).size)
        for (k in listOf(0, 11)) expectError("k: expected an int in [1, 10]; got $k") { s.topK(p, k) }
        expectError("probabilities: expected 10 values; got 3") { s.topK(FloatArray(3), 1) }
    }
}
