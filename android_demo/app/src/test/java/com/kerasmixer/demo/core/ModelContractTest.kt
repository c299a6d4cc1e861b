package com.kerasmixer.demo.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.fail
import org.junit.Test

class ModelContractTest {
    private val digits = (0..9).map { it.toString() }

    @Test
    fun floatSidecar() {
        val c = Fixtures.contract("float")
        assertArrayEquals(intArrayOf(1, 32, 32, 3), c.input.shape)
        assertEquals(DType.FLOAT32, c.input.dtype)
        assertNull(c.input.quantization)
        assertEquals(DType.FLOAT32, c.output.dtype)
        assertEquals(OutputKind.PROBABILITIES, c.outputKind)
        assertEquals(digits, c.labels)
        assertEquals(32, c.height)
        assertEquals(32, c.width)
        assertEquals(10, c.classes)
        assertEquals(32 * 32 * 3 * 4, c.input.bytes)
        assertEquals("none", c.quantize)
    }

    @Test
    fun int8SidecarCarriesBothQuantizations() {
        val c = Fixtures.contract("int8")
        assertEquals(DType.INT8, c.input.dtype)
        assertEquals(1.0, c.input.quantization!!.scale, 0.0)
        assertEquals(-128, c.input.quantization!!.zeroPoint)
        assertEquals(DType.INT8, c.output.dtype)
        assertEquals(1.0 / 256, c.output.quantization!!.scale, 0.0)
        assertEquals(-128, c.output.quantization!!.zeroPoint)
        assertEquals(32 * 32 * 3, c.input.bytes)
        assertEquals("int8", c.quantize)
    }

    @Test
    fun uint8AndLogitsSidecars() {
        assertEquals(DType.UINT8, Fixtures.contract("uint8").input.dtype)
        assertEquals(0, Fixtures.contract("uint8").input.quantization!!.zeroPoint)
        assertEquals(OutputKind.LOGITS, Fixtures.contract("logits").outputKind)
    }

    @Test
    fun brokenFieldsAreNamed() {
        val good = Fixtures.text("int8")
        expectError(good.replace("keras-mixer-tflite/1", "keras-mixer-tflite/2"),
            "metadata format: expected 'keras-mixer-tflite/1'; got keras-mixer-tflite/2")
        expectError(good.replace("\"int8\",\n  \"color\"", "\"int16\",\n  \"color\""),
            "metadata input.dtype: expected one of [float32, uint8, int8]; got 'int16'")
        expectError(good.replace("\"probabilities\"", "\"scores\""),
            "metadata output.kind: expected one of [probabilities, logits]; got 'scores'")
        expectError(good.replace("\"RGB\"", "\"BGR\""), "metadata input.color: expected 'RGB'; got BGR")
        expectError(good.replace("\"9\"", "\"9\", \"10\""),
            "metadata output.shape: expected [1, len(labels)] = [1, 11]; got [1, 10]")
        expectError(good.replace("\"format\"", "\"formats\""), "metadata: missing field \"format\"")
        val float = Fixtures.text("float")
        expectError(float.replace("\"quantization\": null", "\"quantization\": {\"scale\": 0.5, \"zero_point\": 0}"),
            "metadata input.quantization: expected null for float32, else {\"scale\": float, \"zero_point\": int}; " +
                "got {scale=0.5, zero_point=0}")
    }

    private fun expectError(text: String, message: String) {
        try {
            ModelContract.parse(text)
            fail("no error; wanted: $message")
        } catch (e: IllegalArgumentException) {
            assertEquals(message, e.message)
        }
    }
}
