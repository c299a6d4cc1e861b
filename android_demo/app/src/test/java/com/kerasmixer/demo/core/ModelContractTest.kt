package com.kerasmixer.demo.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
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
    fun preprocessingComesFromTheSidecar() {
        val paper = Fixtures.contract("float").preprocessing
        assertEquals(0.875, paper.cropFraction, 0.0)
        assertEquals(Interpolation.BICUBIC, paper.interpolation)
        val timm = ModelContract.parse(Fixtures.text("int8")
            .replace("\"crop_fraction\": 0.875", "\"crop_fraction\": 0.95")
            .replace("\"bicubic\"", "\"bilinear\"")).preprocessing
        assertEquals(0.95, timm.cropFraction, 0.0)
        assertEquals(Interpolation.BILINEAR, timm.interpolation)
        // An integer 1 is a number in (0, 1] too.
        assertEquals(1.0, ModelContract.parse(Fixtures.text("float")
            .replace("\"crop_fraction\": 0.875", "\"crop_fraction\": 1")).preprocessing.cropFraction, 0.0)
    }

    @Test
    fun sidecarsWithoutPreprocessingGetThePapers() {
        val old = Fixtures.text("uint8").replace(Regex(",\\s*\"preprocessing\": \\{[^}]*\\}"), "")
        assertFalse(old.contains("preprocessing"))
        val p = ModelContract.parse(old).preprocessing
        assertEquals(Preprocessing.DEFAULT_CROP_FRACTION, p.cropFraction, 0.0)
        assertEquals(0.875, p.cropFraction, 0.0)
        assertEquals(Interpolation.BICUBIC, p.interpolation)
    }

    @Test
    fun brokenPreprocessingIsNamed() {
        val good = Fixtures.text("float")
        val crop = "\"crop_fraction\": 0.875"
        for ((value, shown) in listOf("0" to "0", "0.0" to "0.0", "-0.5" to "-0.5", "1.5" to "1.5",
                                      "\"0.9\"" to "0.9", "null" to "null", "true" to "true")) {
            expectError(good.replace(crop, "\"crop_fraction\": $value"),
                "metadata preprocessing.crop_fraction: expected a number in (0, 1]; got $shown")
        }
        expectError(good.replace("\"bicubic\"", "\"area\""),
            "metadata preprocessing.interpolation: expected one of [bicubic, bilinear]; got 'area'")
        expectError(good.replace("\"bicubic\"", "\"Bicubic\""),
            "metadata preprocessing.interpolation: expected one of [bicubic, bilinear]; got 'Bicubic'")
        expectError(good.replace("\"bicubic\"", "3"),
            "metadata preprocessing.interpolation: expected one of [bicubic, bilinear]; got 3")
        expectError(good.replace("\"bicubic\"", "null"),
            "metadata preprocessing.interpolation: expected one of [bicubic, bilinear]; got null")
        expectError(good.replace("$crop,", ""), "metadata: missing field \"crop_fraction\"")
        expectError(good.replace(Regex("\"preprocessing\": \\{[^}]*\\}"), "\"preprocessing\": null"),
            "metadata preprocessing: expected an object; got null")
        expectError(good.replace(Regex("\"preprocessing\": \\{[^}]*\\}"), "\"preprocessing\": 0.875"),
            "metadata preprocessing: expected an object; got 0.875")
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
