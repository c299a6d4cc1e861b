package com.kerasmixer.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class JsonTest {
    @Test
    fun parsesNestedValuesAndKeepsIntegersApartFromFloats() {
        val v = Json.parse(""" {"a": [1, -2, 3.5, 1e-3, true, false, null], "b": {"c": "d"}} """) as Map<*, *>
        assertEquals(listOf(1L, -2L, 3.5, 1e-3, true, false, null), v["a"])
        assertEquals(mapOf("c" to "d"), v["b"])
    }

    @Test
    fun decodesEscapes() {
        assertEquals("q\"b\\s/\n\té", Json.parse("\"q\\\"b\\\\s\\/\\n\\t\\u00e9\""))
    }

    @Test
    fun emptyContainers() {
        assertEquals(emptyMap<String, Any?>(), Json.parse("{ }"))
        assertEquals(emptyList<Any?>(), Json.parse("[ ]"))
        assertNull(Json.parse("null"))
    }

    @Test
    fun errorsSayWhatWasExpectedAndWhere() {
        expectError("{\"a\" 1}", "json: expected ':' at offset 5; got '1'")
        expectError("[1, 2", "json: expected ']' at offset 5; got end of input")
        expectError("{} x", "json: expected end of input at offset 3; got 'x'")
        expectError("nope", "json: expected a value at offset 0; got 'n'")
    }

    private fun expectError(text: String, message: String) {
        try {
            Json.parse(text)
            fail("no error for $text")
        } catch (e: IllegalArgumentException) {
            assertTrue("got: ${e.message}", e.message == message)
        }
    }
}
