//! Images between JS and the core: raw pixels from `ImageData`, and tensors back to RGBA for
//! display.

use crate::model::{Image, Preprocessor};

/// Undoes the normalisation of a `[C, H, W]` tensor for display: RGBA bytes `[H, W, 4]`.
pub fn tensor_to_rgba(pre: &Preprocessor, pixels: &[f32], channels: usize, hw: usize) -> Vec<u8> {
    let cfg = &pre.config;
    let pick = |v: &[f32], ch: usize| v.get(ch).or(v.last()).copied().unwrap_or(0.0);
    let mut out = vec![255u8; hw * 4];
    for p in 0..hw {
        for k in 0..3 {
            let ch = k.min(channels - 1);
            let mut v = pixels[ch * hw + p];
            if cfg.do_normalize {
                v = v * pick(&cfg.image_std, ch) + pick(&cfg.image_mean, ch);
            }
            if cfg.do_rescale && cfg.rescale_factor > 0.0 {
                v = (v as f64 / cfg.rescale_factor) as f32;
            }
            out[p * 4 + k] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// An image from raw RGBA (`ImageData`) or gray bytes.
pub fn raw_image(width: u32, height: u32, data: Vec<u8>) -> crate::model::Result<Image> {
    let px = width as usize * height as usize;
    let channels = if px > 0 && data.len() == px {
        1
    } else if data.len() == px * 3 {
        3
    } else {
        4
    };
    Image::from_raw(width, height, channels, data)
}
