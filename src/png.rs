//! A minimal PNG encoder for 8-bit grey and RGB images (no compression dependency): the image data
//! is a zlib stream of stored (uncompressed) deflate blocks (RFC 1950/1951), in the chunks of
//! the PNG specification (IHDR, IDAT, IEND), each with its CRC-32.

/// CRC-32 (ISO 3309, polynomial 0xEDB88320 reflected), as PNG chunks use it.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for p in parts {
        for &b in *p {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
    }
    c ^ 0xffff_ffff
}

/// Adler-32 checksum of a zlib stream's uncompressed data.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// A zlib stream holding `data` in stored deflate blocks (at most 65535 bytes each).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(blocks.peek().is_none() as u8);
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// Encodes a `width x height` grey image (`pixels`: row-major, one byte per pixel) as PNG.
pub fn grey(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    encode(width, height, pixels, 1)
}

/// Encodes a `width x height` colour image (`pixels`: row-major, R, G, B bytes per pixel) as
/// PNG.
pub fn rgb(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    encode(width, height, pixels, 3)
}

/// `channels`: 1 (grey, PNG colour type 0) or 3 (RGB, colour type 2), 8 bits each.
fn encode(width: usize, height: usize, pixels: &[u8], channels: usize) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height * channels, "pixel count");
    let mut raw = Vec::with_capacity((width * channels + 1) * height);
    for row in pixels.chunks((width * channels).max(1)) {
        raw.push(0); // filter type: none
        raw.extend_from_slice(row);
    }
    let colour_type = if channels == 3 { 2 } else { 0 };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    // 8 bits per channel, colour type, deflate, adaptive filter, no interlace.
    ihdr.extend_from_slice(&[8, colour_type, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        // The CRC of an empty IEND chunk is the constant every PNG ends with.
        assert_eq!(crc32(&[b"IEND"]), 0xae42_6082);
        // CRC-32 check value of "123456789".
        assert_eq!(crc32(&[b"123456789"]), 0xcbf4_3926);
        // Adler-32 of "Wikipedia" (RFC 1950 example often quoted).
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn rgb_images_have_colour_type_2_and_three_bytes_per_pixel() {
        let png = rgb(1, 2, &[255, 0, 0, 0, 0, 255]);
        assert_eq!(&png[16..26], &[0, 0, 0, 1, 0, 0, 0, 2, 8, 2]);
        let z = &png[8 + 25 + 8..];
        // Two rows of filter byte + 3 bytes: one stored block of 8 bytes.
        assert_eq!(&z[2..7], &[1, 8, 0, 0xf7, 0xff]);
        assert_eq!(&z[7..15], &[0, 255, 0, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn encodes_a_2x2_image_byte_for_byte() {
        let png = grey(2, 2, &[0, 255, 128, 7]);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: length 13, then width 2, height 2, depth 8, colour 0.
        assert_eq!(&png[8..16], b"\x00\x00\x00\x0dIHDR");
        assert_eq!(&png[16..26], &[0, 0, 0, 2, 0, 0, 0, 2, 8, 0]);
        // IDAT: zlib header, one final stored block of 6 bytes (2 rows of filter byte + 2).
        let idat = 8 + 25;
        assert_eq!(&png[idat + 4..idat + 8], b"IDAT");
        let z = &png[idat + 8..];
        assert_eq!(&z[..2], &[0x78, 0x01]);
        assert_eq!(&z[2..7], &[1, 6, 0, 0xf9, 0xff]);
        assert_eq!(&z[7..13], &[0, 0, 255, 0, 128, 7]);
        assert_eq!(
            &png[png.len() - 12..],
            b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"
        );
    }
}
