package com.kerasmixer.demo

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Build
import com.kerasmixer.demo.core.ResizePlan

/** Photo -> Bitmap -> the model's H x W pixels, the paper's resize-and-centre-crop. */
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
     * The `width` x `height` ARGB pixels the model sees: resize so the crop is
     * ResizePlan.CROP_FRACTION of the image (bilinear; the Python side uses
     * bicubic), then take the centre.
     */
    fun modelPixels(bitmap: Bitmap, width: Int, height: Int): IntArray {
        val plan = ResizePlan.of(bitmap.width, bitmap.height, width, height)
        val scaled = Bitmap.createScaledBitmap(bitmap, plan.scaledWidth, plan.scaledHeight, true)
        val pixels = IntArray(width * height)
        scaled.getPixels(pixels, 0, width, plan.left, plan.top, width, height)
        if (scaled !== bitmap) scaled.recycle()
        return pixels
    }
}
