//! The enrollment code as a printable QR code (issue #4 §5): the hospital
//! hands the patient a letter, and the patient's phone reads the code
//! instead of the patient typing 20 characters.
//!
//! Pure rendering, no I/O. The SVG is drawn here rather than by the QR
//! crate's renderer so that it stays small (one path, horizontal runs
//! merged) and so that its shape is ours to document and to test: a test
//! reads the path back into modules and decodes it with an independent
//! QR reader.

use qrcode::{Color, EcLevel, QrCode};

/// Quiet zone around the symbol, in modules: ISO/IEC 18004 asks for four.
pub const QUIET_ZONE: usize = 4;

/// What the QR code carries. With a portal enrollment link configured, a
/// link that opens the portal's enrollment page with the code filled in;
/// the code travels in the fragment, which browsers never send to the
/// portal's server, so it stays out of that server's access logs.
/// Without a link, the code itself.
pub fn payload(enrollment_link: Option<&str>, code: &str) -> String {
    match enrollment_link {
        Some(link) => format!("{link}#code={code}"),
        None => code.to_owned(),
    }
}

/// The QR symbol for `text` as an SVG document: dark modules as one path
/// on a white background with the quiet zone, one unit per module, so the
/// printer scales it to any size without blurring. Error correction level
/// M (15%) survives a crease or a smudge on a printed letter.
pub fn svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let width = code.width();
    let size = width + 2 * QUIET_ZONE;
    let colors = code.to_colors();
    let mut path = String::with_capacity(width * width * 2);
    for (y, row) in colors.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] == Color::Dark {
                let start = x;
                while x < width && row[x] == Color::Dark {
                    x += 1;
                }
                path.push_str(&format!(
                    "M{} {}h{}v1h-{}z",
                    start + QUIET_ZONE,
                    y + QUIET_ZONE,
                    x - start,
                    x - start
                ));
            } else {
                x += 1;
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Reads the modules back out of an SVG this module drew: the viewBox
    /// gives the size, each `M x y h n v1 h-n z` run paints n modules.
    fn modules_of(svg: &str) -> (usize, Vec<bool>) {
        let size: usize = svg
            .split("viewBox=\"0 0 ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a viewBox");
        let d = svg
            .split(" d=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a path");
        let mut dark = vec![false; size * size];
        for run in d.split('z').filter(|r| !r.is_empty()) {
            let numbers: Vec<usize> = run
                .trim_start_matches('M')
                .split(['h', 'v', ' '])
                .filter(|n| !n.is_empty() && !n.starts_with('-'))
                .map(|n| n.parse().unwrap())
                .collect();
            let [x, y, len, 1] = numbers[..] else {
                panic!("unexpected run {run:?}");
            };
            for dx in 0..len {
                dark[y * size + x + dx] = true;
            }
        }
        (size, dark)
    }

    /// Decodes with rqrr, a reader written apart from the encoder.
    fn decode(svg: &str) -> String {
        let (size, dark) = modules_of(svg);
        let scale = 6;
        let mut image =
            rqrr::PreparedImage::prepare_from_bitmap(size * scale, size * scale, |x, y| {
                dark[(y / scale) * size + x / scale]
            });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one QR symbol");
        grids[0].decode().expect("decodes").1
    }

    #[test]
    fn a_printed_code_reads_back_as_the_same_text() {
        for text in [
            "7KQ2-M9XA-0PZR-TT4E-HB1C",
            &payload(
                Some("https://portal.example.jp/enroll"),
                "7KQ2-M9XA-0PZR-TT4E-HB1C",
            ),
        ] {
            let drawn = svg(text).unwrap();
            assert_eq!(decode(&drawn), text);
        }
    }

    #[test]
    fn the_symbol_has_its_quiet_zone_and_nothing_else_outside() {
        let (size, dark) = modules_of(&svg("7KQ2-M9XA-0PZR-TT4E-HB1C").unwrap());
        for y in 0..size {
            for x in 0..size {
                let inside = (QUIET_ZONE..size - QUIET_ZONE).contains(&x)
                    && (QUIET_ZONE..size - QUIET_ZONE).contains(&y);
                assert!(inside || !dark[y * size + x], "dark module at ({x}, {y})");
            }
        }
        // The top-left finder pattern's corner is dark.
        assert!(dark[QUIET_ZONE * size + QUIET_ZONE]);
    }

    #[test]
    fn the_code_rides_in_the_fragment_of_the_link() {
        assert_eq!(payload(None, "AB12"), "AB12");
        assert_eq!(
            payload(Some("https://p.example/enroll"), "AB12"),
            "https://p.example/enroll#code=AB12"
        );
    }
}
