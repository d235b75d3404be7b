//! Value parsers of flags whose range clap cannot say by itself.

/// `--alpha`: a probability strictly between 0 and 1.
pub(super) fn alpha(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !(v > 0.0 && v < 1.0) {
        return Err(format!("`{s}` must be between 0 and 1, e.g. 0.05"));
    }
    Ok(v)
}

/// `--min-width`: a finite, non-negative pixel count (inferno would draw nothing, or
/// everything, for NaN or a negative width without saying so).
pub(super) fn min_width(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of pixels"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` must be a finite number of pixels >= 0"));
    }
    Ok(v)
}
