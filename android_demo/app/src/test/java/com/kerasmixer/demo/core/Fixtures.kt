package com.kerasmixer.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.fail

/**
 * Sidecars written by `keras-mixer export tflite` for a tiny 32x32, 10-class
 * Mixer (see README "Test fixtures"); tests/test_android_contract.py checks
 * that they still pass the exporter's own schema check.
 */
object Fixtures {
    fun text(name: String): String = resource("contract_$name.json")

    /** A file of app/src/test/resources. */
    fun resource(file: String): String = Fixtures::class.java.getResource("/$file")!!.readText()

    fun contract(name: String): ModelContract = ModelContract.parse(text(name))

    /** A hand-made contract with a chosen input/output quantization (edge cases). */
    fun quantized(dtype: String, scale: Double, zeroPoint: Int, size: Int = 2, classes: Int = 3): ModelContract {
        val labels = (0 until classes).joinToString(",") { "\"c$it\"" }
        val q = "{\"scale\": $scale, \"zero_point\": $zeroPoint}"
        return ModelContract.parse("""
            {"format": "keras-mixer-tflite/1",
             "input": {"shape": [1, $size, $size, 3], "dtype": "$dtype", "color": "RGB",
                       "range": [0, 255], "quantization": $q},
             "output": {"shape": [1, $classes], "dtype": "$dtype", "kind": "logits", "quantization": $q},
             "labels": [$labels], "model": "hand", "quantize": "int8", "target": "cpu"}
        """)
    }

    /** Runs `block` and checks it throws IllegalArgumentException(message). */
    fun expectError(message: String, block: () -> Unit) {
        try {
            block()
            fail("no error; wanted: $message")
        } catch (e: IllegalArgumentException) {
            assertEquals(message, e.message)
        }
    }
}
