//! Training examples kept as preprocessed tensors (`[C, H, W]` f32 at the model's input size,
//! 3 KB for the default 28x28 model), never as decoded bitmaps.

use crate::learn::trainer::Prepared;
use crate::model::{Image, Preprocessor};

#[derive(Debug, Clone, Default)]
pub struct Examples {
    /// `[N, C, H, W]`.
    pub pixels: Vec<f32>,
    pub labels: Vec<usize>,
    pub image_len: usize,
}

impl Examples {
    pub fn new(image_len: usize) -> Self {
        Self {
            image_len,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn push(&mut self, pixels: &[f32], label: usize) {
        debug_assert_eq!(pixels.len(), self.image_len);
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
    }

    pub fn image(&self, i: usize) -> &[f32] {
        &self.pixels[i * self.image_len..(i + 1) * self.image_len]
    }

    pub fn counts(&self, classes: usize) -> Vec<usize> {
        let mut c = vec![0; classes];
        for &l in &self.labels {
            if l < classes {
                c[l] += 1;
            }
        }
        c
    }

    /// Removes every example of `class` and renumbers the classes above it.
    pub fn remove_class(&mut self, class: usize) {
        let mut out = Examples::new(self.image_len);
        for i in 0..self.len() {
            let l = self.labels[i];
            if l != class {
                out.push(self.image(i), if l > class { l - 1 } else { l });
            }
        }
        *self = out;
    }

    /// A stratified split by `seed`: about `fraction` of every class with 2+ examples is held out.
    pub fn split(&self, classes: usize, fraction: f64, seed: u64) -> (Examples, Examples) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (Examples::new(self.image_len), Examples::new(self.image_len));
        for class in 0..classes {
            let mut idx: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] == class).collect();
            idx.shuffle(&mut rng);
            let k = if idx.len() >= 2 && fraction > 0.0 {
                ((idx.len() as f64 * fraction).round() as usize).clamp(1, idx.len() - 1)
            } else {
                0
            };
            for (j, &i) in idx.iter().enumerate() {
                if j < k { &mut b } else { &mut a }.push(self.image(i), class);
            }
        }
        (a, b)
    }

    pub fn prepared(&self) -> Prepared {
        Prepared {
            pixels: self.pixels.clone(),
            labels: self.labels.clone(),
            image_len: self.image_len,
        }
    }
}

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
