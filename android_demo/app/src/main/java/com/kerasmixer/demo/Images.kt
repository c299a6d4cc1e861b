package com.kerasmixer.demo

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Build
import com.kerasmixer.demo.core.Preprocessing
import com.kerasmixer.demo.core.Resize

/** Photo -> Bitmap -> the model's H x W pixels, the checkpoint's resize-and-centre-crop. */
object Images {
    /**
     * Decodes `uri` into a software bitmap (getPixels cannot read hardware ones),
     * downsampled by a power of two while the shorter side stays >= `minSide`
     * (a 12 MP photo would otherwise take ~48 MB for a 224x224 input).
     * ImageDecoder (API 28+) also applies the EXIF rotation of camera photos.
     */
    fun decode(resolver: ContentResolver, uri: Uri, minSide: Int): Bitmap {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) {
            val source = ImageDecoder.createSource(resolver, uri)
            return ImageDecoder.decodeBitmap(source) { decoder, info, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
                decoder.setTargetSampleSize(sampleSize(info.size.width, info.size.height, minSide))
            }
        }
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, bounds) }
        val options = BitmapFactory.Options().apply {
            inSampleSize = sampleSize(bounds.outWidth, bounds.outHeight, minSide)
            inPreferredConfig = Bitmap.Config.ARGB_8888
        }
        return resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, options) }
            ?: throw IllegalArgumentException("not a decodable image: $uri")
    }

    private fun sampleSize(width: Int, height: Int, minSide: Int): Int {
        var sample = 1
        while (minOf(width, height) / (sample * 2) >= minSide) sample *= 2
        return sample
    }

    /**
     * The `width` x `height` RGB floats the model sees: resize so the crop is
     * `preprocessing.cropFraction` of the image, with its interpolation
     * (TensorFlow's, as the Python side), then take the centre. See core/Resize.kt.
     */
    fun modelPixels(bitmap: Bitmap, width: Int, height: Int, preprocessing: Preprocessing): FloatArray {
        val argb = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(argb, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        return Resize.resizeCrop(argb, bitmap.width, bitmap.height, width, height, preprocessing)
    }
}
