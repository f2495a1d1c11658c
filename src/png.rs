//! PNG files of 8-bit RGB images (the pictures drawn by [`crate::picture`]), through the `png`
//! crate (deflate-compressed; the library reads Omniglot with the same crate).

/// Encodes a `width x height` colour image (`pixels`: row-major, R, G, B bytes per pixel) as
/// PNG.
pub fn rgb(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    encode(width, height, pixels, png::ColorType::Rgb)
}

fn encode(width: usize, height: usize, pixels: &[u8], colour: png::ColorType) -> Vec<u8> {
    let channels = colour.samples();
    assert_eq!(pixels.len(), width * height * channels, "pixel count");
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
    encoder.set_color(colour);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    // Writing into a Vec of an image whose size was checked above cannot fail.
    let mut writer = encoder.write_header().expect("PNG header");
    writer.write_image_data(pixels).expect("PNG data");
    writer.finish().expect("PNG end");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn rgb_images_decode_to_their_pixels() {
        let png = rgb(1, 2, &[255, 0, 0, 0, 0, 255]);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let (info, pixels) = decode(&png);
        assert_eq!((info.width, info.height), (1, 2));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(pixels, [255, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn uniform_images_are_compressed() {
        let png = rgb(300, 200, &vec![200; 300 * 200 * 3]);
        assert!(png.len() < 2_000, "{} bytes", png.len());
        assert_eq!(decode(&png).1, vec![200; 300 * 200 * 3]);
    }
}
