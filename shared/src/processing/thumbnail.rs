//! Thumbnails for JPEG, PNG, GIF and WebP. Dimensions and allocation are checked
//! from the header before any pixel is decoded, so a decompression bomb costs
//! microseconds, not memory. EXIF orientation is applied.
//!
//! JPEGs are decoded at reduced scale: the IDCT yields 1/2, 1/4 or 1/8 of each side
//! directly (`jpeg-decoder`'s `scale`, libjpeg's DCT scaling, what libvips calls
//! shrink-on-load), so a 24-megapixel photo becomes ~750 x 500 pixels without ever
//! existing at full size: less work, and a few MiB instead of 72 MiB of pixels.

use std::io::Cursor;

use image::{codecs::jpeg::JpegEncoder, DynamicImage, ImageDecoder, ImageReader, Limits};

/// Largest side accepted for decoding (a 12000 x 12000 image is 144 megapixels).
pub const MAX_SIDE: u32 = 12_000;
/// Most memory the decoder may allocate.
pub const MAX_ALLOC: u64 = 512 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The source image's size, after orientation.
    pub source_width: u32,
    pub source_height: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThumbnailError {
    #[error("the image is {width}x{height} pixels; thumbnails are made up to {MAX_SIDE}x{MAX_SIDE}")]
    TooLarge { width: u32, height: u32 },
    #[error("the image could not be decoded: {0}")]
    Decode(String),
}

fn decode_err(e: impl std::fmt::Display) -> ThumbnailError {
    ThumbnailError::Decode(e.to_string())
}

/// Header-only look at the image's dimensions (no pixel decoding).
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ThumbnailError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(decode_err)?;
    let mut reader = reader;
    reader.no_limits();
    reader.into_dimensions().map_err(decode_err)
}

pub fn make(bytes: &[u8], max_side: u32) -> Result<Thumbnail, ThumbnailError> {
    let (w, h) = dimensions(bytes)?;
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(ThumbnailError::TooLarge { width: w, height: h });
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return jpeg_at_scale(bytes, max_side);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(decode_err)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    let (source_width, source_height) = (img.width(), img.height());
    encode(&img, max_side, source_width, source_height)
}

fn encode(
    img: &DynamicImage,
    max_side: u32,
    source_width: u32,
    source_height: u32,
) -> Result<Thumbnail, ThumbnailError> {
    let thumb = img.thumbnail(max_side, max_side).into_rgb8();
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 82).encode_image(&thumb).map_err(decode_err)?;
    Ok(Thumbnail { jpeg, width: thumb.width(), height: thumb.height(), source_width, source_height })
}

/// A JPEG decoded straight to the smallest DCT scale (1/8, 1/4, 1/2, 1) that is still
/// at least `max_side` on a side, then resampled to the thumbnail.
fn jpeg_at_scale(bytes: &[u8], max_side: u32) -> Result<Thumbnail, ThumbnailError> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(decode_err)?;
    let info = decoder.info().ok_or_else(|| ThumbnailError::Decode("no JPEG header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let side = max_side.min(u32::from(u16::MAX)) as u16;
    let (w, h) = decoder.scale(side, side).map_err(decode_err)?;
    let pixels = decoder.decode().map_err(decode_err)?;
    let (w, h) = (u32::from(w), u32::from(h));
    let too_short = || ThumbnailError::Decode("the JPEG decoded to fewer pixels than it declares".into());
    let mut img = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, pixels).ok_or_else(too_short)?)
        }
        jpeg_decoder::PixelFormat::L8 => {
            DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, pixels).ok_or_else(too_short)?)
        }
        jpeg_decoder::PixelFormat::L16 => {
            let wide: Vec<u16> = pixels.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
            DynamicImage::ImageLuma16(image::ImageBuffer::from_raw(w, h, wide).ok_or_else(too_short)?)
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            // Adobe's CMYK JPEGs store inverted values; this is the usual approximation.
            let rgb: Vec<u8> = pixels
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = u16::from(p[3]);
                    [p[0], p[1], p[2]].map(|c| (u16::from(c) * k / 255) as u8)
                })
                .collect();
            DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, rgb).ok_or_else(too_short)?)
        }
    };
    let orientation = decoder
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    img.apply_orientation(orientation);
    let turned = !matches!(
        orientation,
        image::metadata::Orientation::NoTransforms
            | image::metadata::Orientation::Rotate180
            | image::metadata::Orientation::FlipHorizontal
            | image::metadata::Orientation::FlipVertical
    );
    let (source_width, source_height) = if turned { (height, width) } else { (width, height) };
    encode(&img, max_side, source_width, source_height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, RgbImage};

    fn encode(img: &RgbImage, fmt: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    }

    #[test]
    fn thumbnails_keep_aspect_ratio() {
        let img = RgbImage::from_fn(800, 400, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        for fmt in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Gif, ImageFormat::WebP] {
            let t = make(&encode(&img, fmt), 256).unwrap();
            assert_eq!((t.width, t.height), (256, 128), "{fmt:?}");
            assert_eq!((t.source_width, t.source_height), (800, 400));
            assert!(t.jpeg.starts_with(&[0xFF, 0xD8]));
        }
    }

    /// A PNG header claiming 20000 x 20000 with no pixel data: refused from the header.
    #[test]
    fn decompression_bomb_is_refused_before_decoding() {
        let bomb = png_header(20_000, 20_000);
        let started = std::time::Instant::now();
        assert_eq!(make(&bomb, 256).unwrap_err(), ThumbnailError::TooLarge { width: 20_000, height: 20_000 });
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
    }

    /// A structurally valid PNG (IHDR, a token IDAT, IEND) claiming `w` x `h`.
    pub(crate) fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in
            [(&b"IHDR"[..], ihdr), (b"IDAT", vec![0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1]), (b"IEND", Vec::new())]
        {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(&data);
            png.extend_from_slice(&chunk);
            png.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
        }
        png
    }

    /// A landscape JPEG whose EXIF says "rotate 90° clockwise" (orientation 6), as
    /// phones write them: the thumbnail must come out portrait.
    #[test]
    fn exif_orientation_is_applied() {
        let img = RgbImage::from_fn(800, 400, |x, _| image::Rgb([(x % 256) as u8, 0, 0]));
        let plain = encode(&img, ImageFormat::Jpeg);
        let mut tiff = b"II*\0\x08\0\0\0".to_vec(); // little-endian TIFF, IFD at 8
        tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_le_bytes()); // count
        tiff.extend_from_slice(&[6, 0, 0, 0]); // value 6
        tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut rotated = plain[..2].to_vec(); // SOI
        rotated.extend_from_slice(&[0xFF, 0xE1]);
        rotated.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        rotated.extend_from_slice(&app1);
        rotated.extend_from_slice(&plain[2..]);
        let t = make(&rotated, 256).unwrap();
        assert_eq!((t.source_width, t.source_height), (400, 800));
        assert_eq!((t.width, t.height), (128, 256));
        let unrotated = make(&plain, 256).unwrap();
        assert_eq!((unrotated.width, unrotated.height), (256, 128));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(make(b"definitely not an image", 256), Err(ThumbnailError::Decode(_))));
    }
}
