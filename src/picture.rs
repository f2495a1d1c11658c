//! What every picture shares: the embedded font, PNG drawing through plotters' bitmap backend,
//! and the SVG backend adapter that writes straight segments as `<line>`.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};

/// DejaVu Sans cut down to Latin-1 (`assets/fonts/`, with its licence): the text of the PNG
/// pictures, and the text sizes that lay out the SVG ones. Embedded, so that no picture depends
/// on the fonts of the machine it is drawn on.
const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");

/// The font family name every picture uses (SVG viewers show their own sans-serif).
pub const FAMILY: &str = "sans-serif";

/// Registers the embedded font with plotters (once).
pub fn ensure_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        assert!(
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok(),
            "the embedded font is a valid TrueType file"
        );
    });
}

/// The width in pixels of `text` at font size `size`.
pub fn text_width(text: &str, size: f64) -> u32 {
    ensure_font();
    FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Normal)
        .box_size(text)
        .map_or(0, |(w, _)| w)
}

/// A text style of the embedded font: `size`, `colour`, anchored at `(h, v)`.
pub fn text_style(size: f64, colour: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle {
        font: (FAMILY, size).into_font(),
        color: colour.to_backend_color(),
        pos: Pos::new(h, v),
    }
}

/// Draws a `w x h` picture on a white bitmap with `draw` and encodes it as PNG.
pub fn png<F>(w: u32, h: u32, draw: F) -> Result<Vec<u8>, String>
where
    F: for<'b> FnOnce(
        &DrawingArea<BitMapBackend<'b>, Shift>,
    ) -> Result<
        (),
        DrawingAreaErrorKind<<BitMapBackend<'b> as DrawingBackend>::ErrorType>,
    >,
{
    ensure_font();
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(crate::png::rgb(w as usize, h as usize, &pixels))
}

/// Draws a `side x side` grey image (values in [-1, 1], -1 black) with its top-left corner at
/// `at`, each pixel a `scale x scale` square.
pub fn grey_image<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    pixels: &[f32],
    side: usize,
    scale: i32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (k, v) in pixels.iter().enumerate().take(side * side) {
        let g = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        let (x, y) = (
            at.0 + (k % side) as i32 * scale,
            at.1 + (k / side) as i32 * scale,
        );
        root.draw(&Rectangle::new(
            [(x, y), (x + scale, y + scale)], // the bottom-right corner is outside
            RGBColor(g, g, g).filled(),
        ))?;
    }
    Ok(())
}

/// A drawing backend that hands two-point paths (axes, grid lines, ticks) to `draw_line`: in
/// SVG each is a `<line>`, and each curve stays one `<polyline>`.
pub struct LinesAsLines<DB>(pub DB);

/// Writes `DrawingBackend` methods that take `&mut self`, return `Result<(), _>` and hand their
/// arguments unchanged to the wrapped backend `self.0`.
macro_rules! forward_to_inner {
    ($(fn $name:ident $(<$($g:ident: $bound:path),+>)? ($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name $(<$($g: $bound),+>)? (
            &mut self $(, $arg: $ty)*
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.$name($($arg),*)
        })*
    };
}

impl<DB: DrawingBackend> DrawingBackend for LinesAsLines<DB> {
    type ErrorType = DB::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        self.0.estimate_text_size(text, style)
    }

    /// The one method that does not forward: a two-point path is drawn as a line.
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let points: Vec<BackendCoord> = path.into_iter().collect();
        match points[..] {
            [from, to] => self.0.draw_line(from, to, style),
            _ => self.0.draw_path(points, style),
        }
    }

    forward_to_inner! {
        fn ensure_prepared();
        fn present();
        fn draw_pixel(point: BackendCoord, color: BackendColor);
        fn draw_line<S: BackendStyle>(from: BackendCoord, to: BackendCoord, style: &S);
        fn draw_rect<S: BackendStyle>(ul: BackendCoord, br: BackendCoord, style: &S, fill: bool);
        fn draw_circle<S: BackendStyle>(center: BackendCoord, radius: u32, style: &S, fill: bool);
        fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(vert: I, style: &S);
        fn draw_text<S: BackendTextStyle>(text: &str, style: &S, pos: BackendCoord);
    }
}
