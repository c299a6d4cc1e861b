package com.kerasmixer.demo.core

/**
 * The sidecar contract of an exported Mixer (`keras-mixer export tflite`
 * writes `<model>.json` next to `<model>.tflite`; schema in
 * `export/metadata.py`). Everything the app needs to feed the model and read
 * its answer comes from here: image size, input dtype and quantization,
 * output dtype, quantization and kind, and the labels. Nothing about the
 * model is hard-coded in the app.
 *
 * Checks mirror `export.metadata.read_contract`: every failure names the
 * field, what is allowed and what the file holds.
 */
class ModelContract(
    val input: TensorSpec,
    val output: TensorSpec,
    /** "probabilities" (already softmaxed) or "logits". */
    val outputKind: OutputKind,
    val labels: List<String>,
    val model: String,
    /** Export quantization mode: none, float16, dynamic or int8. */
    val quantize: String,
    /** Export target: cpu, gpu, nnapi or edgetpu. */
    val target: String,
    /**
     * The checkpoint's eval resize, from "preprocessing"; a sidecar written
     * before that field existed gets the paper's, Preprocessing.DEFAULT.
     */
    val preprocessing: Preprocessing,
    /**
     * The .tflite file's SHA-256 (hex) and size, "model_sha256"/"model_bytes";
     * null in sidecars written before them. `checkModel` refuses another file.
     */
    val modelSha256: String? = null,
    val modelBytes: Long? = null
) {
    val height: Int get() = input.shape[1]
    val width: Int get() = input.shape[2]
    val classes: Int get() = output.shape[1]

    /** Refuses a model file that is not the one this sidecar was written for
     * (an export interrupted between its two renames). */
    fun checkModel(model: java.nio.ByteBuffer, name: String) {
        if (modelSha256 == null || modelBytes == null) return
        val bytes = model.duplicate().apply { rewind() }
        val size = bytes.remaining().toLong()
        val digest = java.security.MessageDigest.getInstance("SHA-256").run {
            update(bytes)
            digest().joinToString("") { "%02x".format(it) }
        }
        if (size != modelBytes || digest != modelSha256) throw IllegalArgumentException(
            "metadata model_sha256: $name ($size bytes, sha256 $digest) is not the file its " +
                "sidecar describes ($modelBytes bytes, sha256 $modelSha256): export again")
    }

    companion object {
        /** The one schema version this app reads (the Python contract test checks it). */
        const val FORMAT = "keras-mixer-tflite/1"

        /** Parses and checks a sidecar's text. */
        fun parse(text: String): ModelContract {
            val root = Json.parse(text) as? Map<*, *>
                ?: throw IllegalArgumentException("metadata: expected a JSON object at the top level")
            val format = root.str("format")
            need(format == FORMAT, "format", format, "'$FORMAT'")
            val input = root.obj("input")
            val output = root.obj("output")
            val inputSpec = tensor("input", input)
            val outputSpec = tensor("output", output)
            val shape = inputSpec.shape
            need(shape.size == 4 && shape[0] == 1 && shape[3] == 3 && shape[1] > 0 && shape[2] > 0,
                "input.shape", shape.toList(), "[1, H, W, 3]")
            val color = input.str("color")
            need(color == "RGB", "input.color", color, "'RGB'")
            val range = input.list("range").map { (it as? Number)?.toDouble() }
            need(range == listOf(0.0, 255.0), "input.range", range, "[0, 255]")
            val kind = OutputKind.fromName(output.str("kind"))
            val labels = root.list("labels").map {
                it as? String ?: throw IllegalArgumentException("metadata labels: expected strings; got $it")
            }
            need(outputSpec.shape.size == 2 && outputSpec.shape[0] == 1 && outputSpec.shape[1] == labels.size,
                "output.shape", outputSpec.shape.toList(), "[1, len(labels)] = [1, ${labels.size}]")
            val preprocessing = if (root.containsKey("preprocessing")) {
                preprocessing(root.obj("preprocessing"))
            } else {
                Preprocessing.DEFAULT
            }
            var sha: String? = null
            var size: Long? = null
            if (root.containsKey("model_sha256")) {
                sha = root.field("model_sha256") as? String
                need(sha != null && sha.length == 64, "model_sha256", root["model_sha256"], "64 hex digits")
                size = root.field("model_bytes") as? Long
                need(size != null, "model_bytes", root["model_bytes"], "an integer")
            }
            return ModelContract(inputSpec, outputSpec, kind, labels, root.str("model"),
                root.str("quantize"), root.str("target"), preprocessing, sha, size)
        }

        private fun preprocessing(o: Map<*, *>): Preprocessing {
            val crop = o.field("crop_fraction")
            need(crop is Number && crop.toDouble() > 0.0 && crop.toDouble() <= 1.0,
                "preprocessing.crop_fraction", crop, "a number in (0, 1]")
            val interpolation = Interpolation.fromName(o.field("interpolation"), "preprocessing.interpolation")
            return Preprocessing((crop as Number).toDouble(), interpolation)
        }

        private fun tensor(name: String, o: Map<*, *>): TensorSpec {
            val shape = o.list("shape").map {
                (it as? Long)?.toInt() ?: throw IllegalArgumentException(
                    "metadata $name.shape: expected integers; got ${o["shape"]}")
            }.toIntArray()
            val dtype = DType.fromName(o.str("dtype"), "$name.dtype")
            val q = o.optObj("quantization")
            val quant = if (q == null) null else Quantization(q.num("scale"), q.int("zero_point"))
            need((quant == null) == (dtype == DType.FLOAT32), "$name.quantization", q,
                "null for float32, else {\"scale\": float, \"zero_point\": int}")
            need(quant == null || quant.scale > 0.0, "$name.quantization.scale", quant?.scale, "> 0")
            return TensorSpec(shape, dtype, quant)
        }

        private fun need(ok: Boolean, field: String, got: Any?, allowed: String) {
            if (!ok) throw IllegalArgumentException("metadata $field: expected $allowed; got $got")
        }

        // Typed field access: each names the missing or mistyped field.
        private fun Map<*, *>.field(key: String): Any? {
            if (!containsKey(key)) throw IllegalArgumentException("metadata: missing field \"$key\"")
            return get(key)
        }

        private fun Map<*, *>.str(key: String): String = field(key) as? String
            ?: throw IllegalArgumentException("metadata $key: expected a string; got ${get(key)}")

        private fun Map<*, *>.obj(key: String): Map<*, *> = field(key) as? Map<*, *>
            ?: throw IllegalArgumentException("metadata $key: expected an object; got ${get(key)}")

        private fun Map<*, *>.optObj(key: String): Map<*, *>? = field(key)?.let {
            it as? Map<*, *> ?: throw IllegalArgumentException("metadata $key: expected an object or null; got $it")
        }

        private fun Map<*, *>.list(key: String): List<*> = field(key) as? List<*>
            ?: throw IllegalArgumentException("metadata $key: expected a list; got ${get(key)}")

        private fun Map<*, *>.num(key: String): Double = (field(key) as? Number)?.toDouble()
            ?: throw IllegalArgumentException("metadata $key: expected a number; got ${get(key)}")

        private fun Map<*, *>.int(key: String): Int = (field(key) as? Long)?.toInt()
            ?: throw IllegalArgumentException("metadata $key: expected an integer; got ${get(key)}")
    }
}

/**
 * The checkpoint's evaluation resize (`keras_mixer.preprocessing.eval_resize_crop`):
 * scale the image so the model's H x W centre crop is `cropFraction` of it,
 * with `interpolation`, then crop. The sidecar's "preprocessing" field:
 * {"crop_fraction": number in (0, 1], "interpolation": "bicubic" | "bilinear"}.
 */
class Preprocessing(val cropFraction: Double, val interpolation: Interpolation) {
    companion object {
        /**
         * For sidecars without "preprocessing" (written before it existed):
         * the paper's transform, crop 0.875 (256 -> 224), bicubic, which is
         * what `keras_mixer.preprocessing.eval_transform` gives such models
         * (the contract test compares them).
         */
        const val DEFAULT_CROP_FRACTION = 0.875
        val DEFAULT = Preprocessing(DEFAULT_CROP_FRACTION, Interpolation.BICUBIC)
    }
}

/** Affine quantization: real = (q - zeroPoint) * scale. */
class Quantization(val scale: Double, val zeroPoint: Int)

class TensorSpec(val shape: IntArray, val dtype: DType, val quantization: Quantization?) {
    val elements: Int get() = shape.fold(1) { a, b -> a * b }
    val bytes: Int get() = elements * dtype.bytes
}

/** Tensor element types of the contract, by their names in the sidecar. */
enum class DType(val jsonName: String, val bytes: Int, val min: Int, val max: Int) {
    FLOAT32("float32", 4, 0, 0),
    UINT8("uint8", 1, 0, 255),
    INT8("int8", 1, -128, 127);

    companion object {
        fun fromName(name: String, field: String): DType = values().firstOrNull { it.jsonName == name }
            ?: throw IllegalArgumentException(
                "metadata $field: expected one of ${values().map { it.jsonName }}; got '$name'")
    }
}

enum class OutputKind(val jsonName: String) {
    PROBABILITIES("probabilities"),
    LOGITS("logits");

    companion object {
        fun fromName(name: String): OutputKind = values().firstOrNull { it.jsonName == name }
            ?: throw IllegalArgumentException(
                "metadata output.kind: expected one of ${values().map { it.jsonName }}; got '$name'")
    }
}
