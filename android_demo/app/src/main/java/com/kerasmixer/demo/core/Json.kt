package com.kerasmixer.demo.core

/**
 * A minimal JSON reader for the model's sidecar (`<model>.json`).
 *
 * Hand-written so the contract code has no Android dependency (org.json is
 * part of the Android platform) and compiles with any Kotlin compiler on a
 * plain JVM. Values come back as Map<String, Any?>, List<Any?>, String,
 * Long (integer literals), Double (literals with '.', 'e' or 'E'), Boolean
 * or null. Integer vs float is kept apart because the contract needs it
 * ("zero_point" is an int, "scale" a float).
 */
object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        reader.skipSpace()
        val value = reader.value()
        reader.skipSpace()
        if (!reader.atEnd()) throw reader.error("end of input")
        return value
    }

    private class Reader(private val s: String) {
        private var i = 0

        fun atEnd() = i >= s.length

        fun error(expected: String): IllegalArgumentException {
            val got = if (atEnd()) "end of input" else "'" + s[i] + "'"
            return IllegalArgumentException("json: expected $expected at offset $i; got $got")
        }

        fun skipSpace() {
            while (!atEnd() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++
        }

        fun value(): Any? {
            if (atEnd()) throw error("a value")
            val c = s[i]
            return when {
                c == '{' -> obj()
                c == '[' -> array()
                c == '"' -> string()
                c == '-' || c in '0'..'9' -> number()
                s.startsWith("true", i) -> { i += 4; true }
                s.startsWith("false", i) -> { i += 5; false }
                s.startsWith("null", i) -> { i += 4; null }
                else -> throw error("a value")
            }
        }

        private fun expect(c: Char) {
            if (atEnd() || s[i] != c) throw error("'$c'")
            i++
        }

        private fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            expect('{')
            skipSpace()
            if (!atEnd() && s[i] == '}') { i++; return out }
            while (true) {
                skipSpace()
                if (atEnd() || s[i] != '"') throw error("a string key")
                val key = string()
                skipSpace()
                expect(':')
                skipSpace()
                out[key] = value()
                skipSpace()
                if (!atEnd() && s[i] == ',') { i++; continue }
                expect('}')
                return out
            }
        }

        private fun array(): List<Any?> {
            val out = ArrayList<Any?>()
            expect('[')
            skipSpace()
            if (!atEnd() && s[i] == ']') { i++; return out }
            while (true) {
                skipSpace()
                out.add(value())
                skipSpace()
                if (!atEnd() && s[i] == ',') { i++; continue }
                expect(']')
                return out
            }
        }

        private fun string(): String {
            expect('"')
            val out = StringBuilder()
            while (true) {
                if (atEnd()) throw error("'\"'")
                val c = s[i++]
                when (c) {
                    '"' -> return out.toString()
                    '\\' -> out.append(escape())
                    else -> out.append(c)
                }
            }
        }

        private fun escape(): Char {
            if (atEnd()) throw error("an escape")
            val c = s[i++]
            return when (c) {
                '"', '\\', '/' -> c
                'b' -> '\b'
                'f' -> '\u000C'
                'n' -> '\n'
                'r' -> '\r'
                't' -> '\t'
                'u' -> {
                    if (i + 4 > s.length) throw error("4 hex digits")
                    val code = s.substring(i, i + 4).toIntOrNull(16) ?: throw error("4 hex digits")
                    i += 4
                    code.toChar()
                }
                else -> { i--; throw error("an escape") }
            }
        }

        private fun number(): Any {
            val start = i
            if (s[i] == '-') i++
            var isFloat = false
            while (!atEnd()) {
                val c = s[i]
                if (c in '0'..'9' || c == '+' || c == '-') {
                    i++
                } else if (c == '.' || c == 'e' || c == 'E') {
                    isFloat = true
                    i++
                } else {
                    break
                }
            }
            val text = s.substring(start, i)
            return (if (isFloat) text.toDoubleOrNull() else text.toLongOrNull())
                ?: throw IllegalArgumentException("json: bad number '$text' at offset $start")
        }
    }
}
