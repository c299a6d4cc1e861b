package com.kerasmixer.demo

import android.content.ActivityNotFoundException
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.net.Uri
import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.ImageView
import android.widget.SeekBar
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.enableEdgeToEdge
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.core.content.FileProvider
import androidx.core.view.ViewCompat
import androidx.core.view.WindowInsetsCompat
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Pick a photo (photo picker) or take one (camera app), classify it with the
 * chosen model on the chosen backend, show the top-5 labels and the time.
 * All LiteRT work happens on `worker`, one thread that owns the Classifier.
 */
class MainActivity : ComponentActivity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private var classifier: Classifier? = null // touched on `worker` only
    private var bitmap: Bitmap? = null // touched on `worker` only
    private var imageUri: Uri? = null

    private lateinit var models: List<String>
    private lateinit var modelSpinner: Spinner
    private lateinit var backendSpinner: Spinner
    private lateinit var threadsSeek: SeekBar
    private lateinit var threadsLabel: TextView
    private lateinit var status: TextView
    private lateinit var results: TextView
    private lateinit var timing: TextView
    private lateinit var image: ImageView

    private val pickPhoto = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) onImage(uri)
    }
    private val takePhoto = registerForActivityResult(ActivityResultContracts.TakePicture()) { saved ->
        if (saved) onImage(cameraUri())
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        // Edge to edge on every API level (targetSdk 35+ enforces it from Android 15).
        enableEdgeToEdge()
        setContentView(R.layout.activity_main)
        bindViews()
        models = Classifier.listModels(this)
        modelSpinner.adapter = adapter(models)
        backendSpinner.adapter = adapter(Backend.values().map { it.title })
        setUpThreads()
        modelSpinner.onItemSelectedListener = onSelect { reload() }
        backendSpinner.onItemSelectedListener = onSelect { reload() }
        findViewById<Button>(R.id.gallery_button).setOnClickListener {
            pickPhoto.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        val camera = findViewById<Button>(R.id.camera_button)
        camera.isEnabled = packageManager.hasSystemFeature(PackageManager.FEATURE_CAMERA_ANY)
        camera.setOnClickListener {
            try {
                takePhoto.launch(cameraUri())
            } catch (e: ActivityNotFoundException) {
                status.setText(R.string.no_camera_app)
            }
        }
        if (models.isEmpty()) status.setText(R.string.no_models)
        savedInstanceState?.getString(KEY_IMAGE)?.let { onImage(Uri.parse(it)) }
    }

    override fun onSaveInstanceState(outState: Bundle) {
        super.onSaveInstanceState(outState)
        imageUri?.let { outState.putString(KEY_IMAGE, it.toString()) }
    }

    override fun onDestroy() {
        super.onDestroy()
        worker.execute {
            classifier?.close()
            classifier = null
        }
        worker.shutdown()
    }

    private fun bindViews() {
        modelSpinner = findViewById(R.id.model_spinner)
        backendSpinner = findViewById(R.id.backend_spinner)
        threadsSeek = findViewById(R.id.threads_seek)
        threadsLabel = findViewById(R.id.threads_label)
        status = findViewById(R.id.status)
        results = findViewById(R.id.results)
        timing = findViewById(R.id.timing)
        image = findViewById(R.id.image)
        // Keep the content clear of the status and navigation bars.
        ViewCompat.setOnApplyWindowInsetsListener(findViewById(R.id.root)) { view, insets ->
            val bars = insets.getInsets(WindowInsetsCompat.Type.systemBars())
            view.setPadding(bars.left, bars.top, bars.right, bars.bottom)
            insets
        }
    }

    private fun setUpThreads() {
        val cores = Runtime.getRuntime().availableProcessors()
        threadsSeek.max = cores - 1 // progress 0..cores-1 -> 1..cores threads
        threadsSeek.progress = minOf(DEFAULT_THREADS, cores) - 1
        threadsLabel.text = getString(R.string.threads, threads())
        threadsSeek.setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(bar: SeekBar, progress: Int, fromUser: Boolean) {
                threadsLabel.text = getString(R.string.threads, threads())
            }

            override fun onStartTrackingTouch(bar: SeekBar) = Unit
            override fun onStopTrackingTouch(bar: SeekBar) = reload()
        })
    }

    private fun threads() = threadsSeek.progress + 1

    /** (Re)creates the classifier for the current choices, then re-runs the current photo. */
    private fun reload() {
        if (models.isEmpty()) return
        val model = models[modelSpinner.selectedItemPosition]
        val backend = Backend.values()[backendSpinner.selectedItemPosition]
        val threads = threads()
        status.text = getString(R.string.loading, model, backend.title)
        worker.execute {
            classifier?.close()
            classifier = null
            val message = try {
                val c = Classifier.open(this, model, backend, threads)
                classifier = c
                describe(model, c)
            } catch (e: Exception) {
                getString(R.string.load_failed, model, e.message ?: e.toString())
            }
            runOnUiThread { status.text = message }
            bitmap?.let { classifyOnWorker(it) }
        }
    }

    private fun describe(model: String, c: Classifier): String {
        val k = c.contract
        val loaded = getString(R.string.loaded, model, k.input.dtype.jsonName, k.width, k.height,
            k.classes, k.output.dtype.jsonName, c.where, c.loadMillis)
        return if (c.fallbackReason == null) loaded else "${c.fallbackReason}; fell back to the CPU.\n$loaded"
    }

    private fun onImage(uri: Uri) {
        imageUri = uri
        results.setText(R.string.classifying)
        worker.execute {
            val decoded = try {
                // Keep at least twice the model's side before the final resize.
                val side = classifier?.contract?.let { maxOf(it.width, it.height) } ?: DEFAULT_SIDE
                Images.decode(contentResolver, uri, 2 * side)
            } catch (e: Exception) {
                runOnUiThread { results.text = getString(R.string.image_failed, e.message ?: e.toString()) }
                return@execute
            }
            bitmap = decoded
            runOnUiThread { image.setImageBitmap(decoded) }
            classifyOnWorker(decoded)
        }
    }

    private fun classifyOnWorker(picture: Bitmap) {
        val c = classifier ?: return
        val result = try {
            c.classify(picture, TOP_K)
        } catch (e: Exception) {
            runOnUiThread { results.text = e.message ?: e.toString() }
            return
        }
        val lines = result.top.joinToString("\n") { "%6.2f%%  %s".format(100 * it.score, it.label) }
        val time = getString(R.string.timing, result.inferenceMillis, result.preprocessMillis, c.where)
        runOnUiThread {
            results.text = lines
            timing.text = time
        }
    }

    /** A fixed file in our cache for the camera app to write to (survives process death). */
    private fun cameraUri(): Uri {
        val file = File(File(cacheDir, "camera").apply { mkdirs() }, "photo.jpg")
        return FileProvider.getUriForFile(this, "$packageName.files", file)
    }

    private fun adapter(items: List<String>) =
        ArrayAdapter(this, android.R.layout.simple_spinner_item, items).apply {
            setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item)
        }

    private fun onSelect(action: () -> Unit) = object : AdapterView.OnItemSelectedListener {
        override fun onItemSelected(parent: AdapterView<*>, view: View?, position: Int, id: Long) = action()
        override fun onNothingSelected(parent: AdapterView<*>) = Unit
    }

    private companion object {
        const val KEY_IMAGE = "image_uri"
        const val TOP_K = 5
        // Big cores on most phones; the slider goes from 1 to all cores.
        const val DEFAULT_THREADS = 4
        const val DEFAULT_SIDE = 224
    }
}
