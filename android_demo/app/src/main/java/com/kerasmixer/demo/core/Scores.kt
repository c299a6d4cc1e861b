package com.kerasmixer.demo.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** One ranked class: its index in the head, its label and its probability. */
class Prediction(val index: Int, val label: String, val score: Float) {
    override fun toString() = "$label (%.4f)".format(score)
}

/** The model's output tensor -> probabilities -> top-k labels. */
class Scores(private val contract: ModelContract) {
    private val spec = contract.output

    /** A direct buffer in native byte order, the size of the output tensor. */
    fun newBuffer(): ByteBuffer = ByteBuffer.allocateDirect(spec.bytes).order(ByteOrder.nativeOrder())

    /**
     * Output buffer -> float values: float32 as is; uint8/int8 dequantized
     * with the output's scale and zero point, (q - zero_point) * scale.
     */
    fun dequantize(out: ByteBuffer): FloatArray {
        require(out.capacity() == spec.bytes) {
            "out: expected ${spec.bytes} bytes for the output tensor; got ${out.capacity()}"
        }
        val n = spec.elements
        val values = FloatArray(n)
        val q = spec.quantization
        val ordered = out.duplicate().order(out.order())
        for (i in 0 until n) {
            values[i] = when (spec.dtype) {
                DType.FLOAT32 -> ordered.getFloat(i * 4)
                DType.UINT8 -> ((ordered.get(i).toInt() and 0xFF) - q!!.zeroPoint) * q.scale.toFloat()
                DType.INT8 -> (ordered.get(i).toInt() - q!!.zeroPoint) * q.scale.toFloat()
            }
        }
        return values
    }

    /** Probabilities: the dequantized output, softmaxed only if the model gives logits. */
    fun probabilities(out: ByteBuffer): FloatArray {
        val values = dequantize(out)
        return if (contract.outputKind == OutputKind.LOGITS) softmax(values) else values
    }

    /** The `k` best classes, best first; ties keep the lower index first. */
    fun topK(probabilities: FloatArray, k: Int): List<Prediction> {
        require(probabilities.size == contract.classes) {
            "probabilities: expected ${contract.classes} values; got ${probabilities.size}"
        }
        require(k in 1..contract.classes) { "k: expected an int in [1, ${contract.classes}]; got $k" }
        val order = (0 until probabilities.size).sortedWith(
            Comparator<Int> { a, b -> java.lang.Float.compare(probabilities[b], probabilities[a]) })
        return order.take(k).map { Prediction(it, contract.labels[it], probabilities[it]) }
    }

    companion object {
        /** Numerically stable softmax (shifted by the maximum). */
        fun softmax(logits: FloatArray): FloatArray {
            require(logits.isNotEmpty()) { "logits: expected at least one value; got none" }
            var max = logits[0]
            for (v in logits) if (v > max) max = v
            val exps = DoubleArray(logits.size) { Math.exp((logits[it] - max).toDouble()) }
            val sum = exps.sum()
            return FloatArray(logits.size) { (exps[it] / sum).toFloat() }
        }
    }
}
