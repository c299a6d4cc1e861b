package com.kerasmixer.demo

import android.content.Context
import android.graphics.Bitmap
import android.os.Build
import android.os.SystemClock
import com.kerasmixer.demo.core.InputEncoder
import com.kerasmixer.demo.core.ModelContract
import com.kerasmixer.demo.core.Prediction
import com.kerasmixer.demo.core.Scores
import java.io.Closeable
import java.io.FileInputStream
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate

/** Where the model runs. The CPU path is LiteRT's default XNNPACK delegate. */
enum class Backend(val title: String) {
    CPU("CPU (XNNPACK)"),
    GPU("GPU delegate"),
    NNAPI("NNAPI delegate")
}

/**
 * One exported Mixer (`<name>.tflite` + its `<name>.json` sidecar, both in
 * assets/) in a LiteRT Interpreter. Not thread-safe: MainActivity calls it
 * from one worker thread only (the GPU delegate must also stay on the thread
 * that created it).
 */
class Classifier private constructor(
    val contract: ModelContract,
    private val interpreter: Interpreter,
    private val delegate: Delegate?,
    /** The backend actually in use (CPU after a fallback). */
    val backend: Backend,
    /** Why the requested backend was not used, or null. */
    val fallbackReason: String?,
    /** CPU threads (XNNPACK, and any op a delegate leaves to the CPU). */
    val threads: Int
) : Closeable {
    /** Time to read, build and warm up the interpreter, in ms. */
    var loadMillis = 0.0
        private set

    private val encoder = InputEncoder(contract)
    private val scores = Scores(contract)
    private val input = encoder.newBuffer()
    private val output = scores.newBuffer()

    /** "CPU (XNNPACK), 4 threads" or the delegate's name, for the UI. */
    val where: String
        get() = if (backend == Backend.CPU) "${backend.title}, $threads threads" else backend.title

    class Result(val top: List<Prediction>, val preprocessMillis: Double, val inferenceMillis: Double)

    /** Top-`k` labels of `bitmap`; inference time is the Interpreter.run call alone. */
    fun classify(bitmap: Bitmap, k: Int = 5): Result {
        val t0 = SystemClock.elapsedRealtimeNanos()
        val pixels = Images.modelPixels(bitmap, contract.width, contract.height, contract.preprocessing)
        encoder.encode(pixels, contract.width, contract.height, input)
        val t1 = SystemClock.elapsedRealtimeNanos()
        run()
        val t2 = SystemClock.elapsedRealtimeNanos()
        val top = scores.topK(scores.probabilities(output), minOf(k, contract.classes))
        return Result(top, (t1 - t0) / 1e6, (t2 - t1) / 1e6)
    }

    private fun run() {
        input.rewind()
        output.rewind()
        interpreter.run(input, output)
    }

    override fun close() {
        interpreter.close()
        (delegate as? AutoCloseable)?.close()
    }

    companion object {
        /** `mixer_int8.tflite` -> `mixer_int8.json`, as `export.metadata.sidecar_path`. */
        fun sidecarName(modelAsset: String) = modelAsset.removeSuffix(".tflite") + ".json"

        /** The .tflite assets that have a sidecar next to them. */
        fun listModels(context: Context): List<String> {
            val names = context.assets.list("")?.toSet() ?: emptySet()
            return names.filter { it.endsWith(".tflite") && sidecarName(it) in names }.sorted()
        }

        /**
         * Loads `modelAsset` on `backend`; if that backend is missing on this
         * device or rejects the model, falls back to the CPU and says why.
         */
        fun open(context: Context, modelAsset: String, backend: Backend, threads: Int): Classifier {
            val start = SystemClock.elapsedRealtimeNanos()
            val text = context.assets.open(sidecarName(modelAsset)).bufferedReader().use { it.readText() }
            val contract = ModelContract.parse(text)
            val model = mapAsset(context, modelAsset)
            contract.checkModel(model, modelAsset)
            var reason: String? = null
            if (backend != Backend.CPU) {
                val delegate = try {
                    createDelegate(backend)
                } catch (e: Exception) {
                    reason = "${backend.title}: ${e.message}"
                    null
                }
                if (delegate != null) {
                    try {
                        val interpreter = Interpreter(model, options(threads).addDelegate(delegate))
                        return warmedUp(contract, interpreter, delegate, backend, null, threads, start)
                    } catch (e: Exception) {
                        // A delegate that cannot take the graph fails in the constructor.
                        (delegate as? AutoCloseable)?.close()
                        reason = "${backend.title} rejected the model (${e.message})"
                    }
                }
            }
            val interpreter = Interpreter(model, options(threads))
            return warmedUp(contract, interpreter, null, Backend.CPU, reason, threads, start)
        }

        private fun options(threads: Int) = Interpreter.Options()
            .setNumThreads(threads)
            .setUseXNNPACK(true)

        private fun createDelegate(backend: Backend): Delegate = when (backend) {
            Backend.GPU -> {
                val compatibility = CompatibilityList()
                try {
                    if (!compatibility.isDelegateSupportedOnThisDevice) {
                        throw UnsupportedOperationException("not supported on this device")
                    }
                    GpuDelegate(compatibility.bestOptionsForThisDevice)
                } finally {
                    compatibility.close()
                }
            }
            Backend.NNAPI -> {
                if (Build.VERSION.SDK_INT < Build.VERSION_CODES.O_MR1) {
                    throw UnsupportedOperationException("needs Android 8.1 (API 27)")
                }
                // Without an accelerator NNAPI would run its slow reference CPU
                // code; refusing it leaves those ops to LiteRT's own CPU kernels.
                NnApiDelegate(NnApiDelegate.Options().setUseNnapiCpu(false))
            }
            Backend.CPU -> throw IllegalArgumentException("backend: the CPU needs no delegate")
        }

        // The first run allocates and (on GPU) compiles kernels; doing it at
        // load keeps that out of the per-image inference time.
        private fun warmedUp(
            contract: ModelContract, interpreter: Interpreter, delegate: Delegate?,
            backend: Backend, reason: String?, threads: Int, start: Long
        ): Classifier {
            val classifier = Classifier(contract, interpreter, delegate, backend, reason, threads)
            classifier.run()
            classifier.loadMillis = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
            return classifier
        }

        private fun mapAsset(context: Context, name: String): MappedByteBuffer =
            context.assets.openFd(name).use { fd ->
                FileInputStream(fd.fileDescriptor).use { stream ->
                    stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
    }
}
