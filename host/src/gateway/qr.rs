//! Renders a pending QR code as SVG or PNG for `GET .../qr?format=`.

use qrcode::QrCode;
use qrcode::render::svg;

/// Pixels per QR module in the PNG.
const SCALE: usize = 8;
/// Quiet zone around the code, in modules (the QR spec asks for 4).
const QUIET: usize = 4;

/// Errors while rendering (the payload did not fit a QR code).
#[derive(Debug, thiserror::Error)]
#[error("cannot render this QR payload: {0}")]
pub struct QrError(String);

pub fn svg(payload: &str) -> Result<String, QrError> {
    let code = QrCode::new(payload.as_bytes()).map_err(|e| QrError(e.to_string()))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

pub fn png(payload: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::new(payload.as_bytes()).map_err(|e| QrError(e.to_string()))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for y in 0..modules {
        for x in 0..modules {
            if colors[y * modules + x] == qrcode::Color::Dark {
                for dy in 0..SCALE {
                    let row = ((y + QUIET) * SCALE + dy) * side;
                    let start = row + (x + QUIET) * SCALE;
                    pixels[start..start + SCALE].fill(0);
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| QrError(e.to_string()))?;
        w.write_image_data(&pixels)
            .map_err(|e| QrError(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_both_formats() {
        let payload = "2@abc,def,ghi,jkl";
        let s = super::svg(payload).unwrap();
        assert!(s.starts_with("<?xml") && s.contains("<svg"));
        let p = super::png(payload).unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
    }
}
