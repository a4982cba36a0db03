//! Image preprocessing as HF `ViTImageProcessor` does it: channel conversion, resize
//! (`resample`), optional center crop, rescale, normalise; the result is `[C, H, W]` f32.

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use super::config::ViTConfig;
use super::error::{ModelError, ModelFile, Result};

/// The largest image side [`Image::decode`] accepts, in pixels (a panorama may be long; the
/// pixel cap bounds the memory).
pub const MAX_IMAGE_SIDE: u32 = 65_535;
/// The most pixels [`Image::decode`] accepts (a 48-megapixel phone photo fits).
pub const MAX_IMAGE_PIXELS: u64 = 64_000_000;
/// The decoder's allocation cap, in bytes.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// A decoder error in words: "cannot decode: ..." (or the limit it hit).
fn limit_message(e: image::ImageError) -> String {
    match e {
        image::ImageError::Limits(l) => format!("too large to decode within {} MiB: {l}", MAX_DECODE_BYTES >> 20),
        e => format!("cannot decode: {e}"),
    }
}

/// Whether a JPEG reaches its end-of-image marker: its segments are walked from the start
/// (each marker's length skips its payload; a scan's entropy-coded data runs to the next marker
/// that is not a stuffed `FF 00` or a restart marker; stray bytes between segments are skipped)
/// until `FF D9`. What follows the marker
/// (a Motion Photo's video, a second image) is not looked at.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 1 < bytes.len() {
        if bytes[i] != 0xFF {
            // Stray bytes between segments (some encoders write them; libjpeg skips them with a
            // warning): look for the next marker.
            i += 1;
            continue;
        }
        let marker = bytes[i + 1];
        match marker {
            0xFF => i += 1, // fill byte
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => i += 2, // standalone
            _ => {
                let Some(len) = bytes
                    .get(i + 2..i + 4)
                    .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
                else {
                    return false;
                };
                i += 2 + len;
                if marker == 0xDA {
                    // Entropy-coded data up to the next real marker.
                    let stuffed_or_restart = |b: u8| matches!(b, 0x00 | 0xD0..=0xD7);
                    while i + 1 < bytes.len() && (bytes[i] != 0xFF || stuffed_or_restart(bytes[i + 1])) {
                        i += 1;
                    }
                }
            }
        }
    }
    false
}

/// A decoded 8-bit image, row-major `[H, W, C]` with `C` = 1 (gray) or 3 (RGB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

impl Image {
    /// An image from raw `[H, W, C]` bytes; `channels` 1, 3 or 4 (alpha is dropped, as PIL's
    /// `convert("RGB")` does).
    pub fn from_raw(width: u32, height: u32, channels: u8, data: Vec<u8>) -> Result<Self> {
        let expected = width as usize * height as usize * channels as usize;
        if width == 0 || height == 0 {
            return Err(ModelError::Image {
                reason: format!("empty image ({width}x{height})"),
            });
        }
        if data.len() != expected {
            return Err(ModelError::Image {
                reason: format!(
                    "{width}x{height}x{channels} image needs {expected} bytes, got {}",
                    data.len()
                ),
            });
        }
        match channels {
            1 | 3 => Ok(Self {
                width,
                height,
                channels,
                data,
            }),
            4 => Ok(Self {
                width,
                height,
                channels: 3,
                data: data.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
            }),
            c => Err(ModelError::Image {
                reason: format!("{c} channels; expected 1 (gray), 3 (RGB) or 4 (RGBA)"),
            }),
        }
    }

    /// Decodes PNG, JPEG, BMP, GIF or WebP bytes. The dimensions are read from the header and
    /// checked against [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_PIXELS`] before any pixel is
    /// allocated (a few kilobytes of PNG can claim 20,000 x 20,000 pixels); the decoder's own
    /// allocations are capped at [`MAX_DECODE_BYTES`]. A JPEG whose data stops before its end
    /// marker is refused (the decoder would fill the rest grey).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| ModelError::Image { reason };
        if bytes.is_empty() {
            return Err(bad("empty file (0 bytes)".into()));
        }
        // One decoder: making it reads the header (no pixels yet); the decoder's own
        // allocations are capped; the size caps are checked before it decodes.
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        let Some(format) = reader.format() else {
            // "format" lets the page fall back to the browser's decoder (AVIF, ...).
            return Err(bad(
                "cannot decode: unknown image format (not PNG, JPEG, BMP, GIF or WebP)".into(),
            ));
        };
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        let decoder = reader.into_decoder().map_err(|e| bad(limit_message(e)))?;
        let (w, h) = image::ImageDecoder::dimensions(&decoder);
        if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
            return Err(bad(format!(
                "{w}x{h} pixels is too large: at most {MAX_IMAGE_SIDE} pixels a side"
            )));
        }
        if w as u64 * h as u64 > MAX_IMAGE_PIXELS {
            return Err(bad(format!(
                "{w}x{h} pixels is too large: {:.0} megapixels, above the limit of {}",
                w as f64 * h as f64 / 1e6,
                MAX_IMAGE_PIXELS / 1_000_000
            )));
        }
        if format == image::ImageFormat::Jpeg && !jpeg_complete(bytes) {
            return Err(bad(
                "truncated JPEG: the data stops before the image's end marker".into()
            ));
        }
        let img = DynamicImage::from_decoder(decoder).map_err(|e| bad(limit_message(e)))?;
        Ok(Self::from_dynamic(img))
    }

    pub fn from_dynamic(img: DynamicImage) -> Self {
        if img.color().has_color() {
            let rgb = img.to_rgb8();
            Self {
                width: rgb.width(),
                height: rgb.height(),
                channels: 3,
                data: rgb.into_raw(),
            }
        } else {
            let g = img.to_luma8();
            Self {
                width: g.width(),
                height: g.height(),
                channels: 1,
                data: g.into_raw(),
            }
        }
    }

    /// The same image with `channels` channels: gray is repeated to RGB; RGB becomes gray with
    /// PIL's `convert("L")` weights (ITU-R 601-2: 299, 587, 114 per mille).
    pub fn to_channels(&self, channels: usize) -> Result<Image> {
        let data = match (self.channels, channels) {
            (a, b) if a as usize == b => self.data.clone(),
            (1, 3) => self.data.iter().flat_map(|&g| [g, g, g]).collect(),
            (3, 1) => self
                .data
                .chunks_exact(3)
                .map(|p| ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8)
                .collect(),
            (_, c) => {
                return Err(ModelError::Input {
                    reason: format!("models with {c} channels are not supported (1 or 3)"),
                })
            }
        };
        Ok(Image {
            width: self.width,
            height: self.height,
            channels: channels as u8,
            data,
        })
    }

    fn resize(&self, width: u32, height: u32, filter: FilterType) -> Image {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let data = if self.channels == 1 {
            let buf = GrayImage::from_raw(self.width, self.height, self.data.clone()).expect("checked size");
            image::imageops::resize(&buf, width, height, filter).into_raw()
        } else {
            let buf = RgbImage::from_raw(self.width, self.height, self.data.clone()).expect("checked size");
            image::imageops::resize(&buf, width, height, filter).into_raw()
        };
        Image {
            width,
            height,
            channels: self.channels,
            data,
        }
    }

    /// HF's center crop: offsets `(size - crop) / 2`, rounded down.
    fn center_crop(&self, width: u32, height: u32) -> Result<Image> {
        if width > self.width || height > self.height {
            return Err(ModelError::Input {
                reason: format!(
                    "cannot center-crop a {}x{} image to {width}x{height}",
                    self.width, self.height
                ),
            });
        }
        let (top, left) = ((self.height - height) / 2, (self.width - width) / 2);
        let c = self.channels as usize;
        let mut data = Vec::with_capacity(width as usize * height as usize * c);
        for y in top..top + height {
            let row = (y * self.width + left) as usize * c;
            data.extend_from_slice(&self.data[row..row + width as usize * c]);
        }
        Ok(Image {
            width,
            height,
            channels: self.channels,
            data,
        })
    }
}

/// `size` / `crop_size` as HF writes them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    HeightWidth { height: u32, width: u32 },
    Square(u32),
}

impl SizeSpec {
    fn hw(self) -> (u32, u32) {
        match self {
            SizeSpec::HeightWidth { height, width } => (height, width),
            SizeSpec::Square(s) => (s, s),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_resample() -> u32 {
    2
}
fn default_rescale() -> f64 {
    1.0 / 255.0
}
fn default_half() -> Vec<f32> {
    vec![0.5, 0.5, 0.5]
}

/// HF `preprocessor_config.json` (the `ViTImageProcessor` fields); unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessorConfig {
    #[serde(default = "yes")]
    pub do_resize: bool,
    #[serde(default)]
    pub size: Option<SizeSpec>,
    /// PIL filter codes: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic.
    #[serde(default = "default_resample")]
    pub resample: u32,
    #[serde(default)]
    pub do_center_crop: bool,
    #[serde(default)]
    pub crop_size: Option<SizeSpec>,
    #[serde(default = "yes")]
    pub do_rescale: bool,
    #[serde(default = "default_rescale")]
    pub rescale_factor: f64,
    #[serde(default = "yes")]
    pub do_normalize: bool,
    #[serde(default = "default_half")]
    pub image_mean: Vec<f32>,
    #[serde(default = "default_half")]
    pub image_std: Vec<f32>,
}

/// A validated preprocessing pipeline for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    pub config: PreprocessorConfig,
    channels: usize,
    resize: Option<(u32, u32, FilterType)>,
    crop: Option<(u32, u32)>,
    mean: Vec<f32>,
    std: Vec<f32>,
    out: (u32, u32),
}

impl Preprocessor {
    /// HF `ViTImageProcessor` defaults for a model: resize to its image size, bilinear,
    /// rescale by 1/255, normalise with mean = std = 0.5.
    pub fn default_for(model: &ViTConfig) -> Result<Self> {
        let cfg: PreprocessorConfig = serde_json::from_str("{}").expect("defaults");
        Self::new(cfg, model)
    }

    pub fn from_json(bytes: &[u8], model: &ViTConfig) -> Result<Self> {
        let cfg: PreprocessorConfig = serde_json::from_slice(bytes).map_err(|e| ModelError::ConfigJson {
            file: ModelFile::Preprocessor,
            message: e.to_string(),
        })?;
        Self::new(cfg, model)
    }

    pub fn new(config: PreprocessorConfig, model: &ViTConfig) -> Result<Self> {
        let bad = |field: &'static str, message: String| ModelError::ConfigValue {
            file: ModelFile::Preprocessor,
            field,
            message,
        };
        let c = model.num_channels;
        let (mh, mw) = model.image_size.hw();
        let per_channel = |field: &'static str, v: &[f32]| -> Result<Vec<f32>> {
            match v.len() {
                1 => Ok(vec![v[0]; c]),
                n if n == c => Ok(v.to_vec()),
                // A 3-value mean on a 1-channel model: use the first value rather than fail.
                3 if c == 1 => Ok(vec![v[0]]),
                n => Err(bad(field, format!("{n} values for a {c}-channel model"))),
            }
        };
        let mean = per_channel("image_mean", &config.image_mean)?;
        let std = per_channel("image_std", &config.image_std)?;
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(bad("image_mean", format!("must be finite, got {m}")));
        }
        if !(config.rescale_factor.is_finite()
            && config.rescale_factor as f32 != 0.0
            && (config.rescale_factor as f32).is_finite())
        {
            return Err(bad(
                "rescale_factor",
                format!("must be a finite non-zero number, got {}", config.rescale_factor),
            ));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(bad("image_std", format!("must be positive, got {s}")));
        }
        let filter = match config.resample {
            0 => FilterType::Nearest,
            1 => FilterType::Lanczos3,
            2 => FilterType::Triangle,
            3 => FilterType::CatmullRom,
            r => {
                return Err(bad(
                    "resample",
                    format!("PIL filter {r} is not supported (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic)"),
                ))
            }
        };
        let resize = if config.do_resize {
            let (h, w) = config.size.map_or((mh as u32, mw as u32), SizeSpec::hw);
            if h == 0 || w == 0 {
                return Err(bad("size", "must be positive".into()));
            }
            Some((w, h, filter))
        } else {
            None
        };
        let crop = if config.do_center_crop {
            let (h, w) = config
                .crop_size
                .ok_or_else(|| bad("crop_size", "required when do_center_crop is true".into()))?
                .hw();
            Some((w, h))
        } else {
            None
        };
        let out = crop.or(resize.map(|(w, h, _)| (w, h)));
        if let Some((w, h)) = out {
            if (h as usize, w as usize) != (mh, mw) {
                return Err(bad(
                    "size",
                    format!("produces {h}x{w} images; the model takes {mh}x{mw}"),
                ));
            }
        }
        Ok(Self {
            config,
            channels: c,
            resize,
            crop,
            mean,
            std,
            out: (mw as u32, mh as u32),
        })
    }

    /// Serialised as HF's `preprocessor_config.json`.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(&self.config).expect("serialises");
        v["image_processor_type"] = "ViTImageProcessor".into();
        serde_json::to_string_pretty(&v).expect("json")
    }

    /// The channel-converted, resized and cropped 8-bit image the model sees.
    pub fn prepare(&self, image: &Image) -> Result<Image> {
        let mut img = image.to_channels(self.channels)?;
        if let Some((w, h, f)) = self.resize {
            img = img.resize(w, h, f);
        }
        if let Some((w, h)) = self.crop {
            img = img.center_crop(w, h)?;
        }
        if (img.width, img.height) != self.out {
            return Err(ModelError::Input {
                reason: format!(
                    "image is {}x{} after preprocessing, the model takes {}x{} (preprocessor_config.json has do_resize false?)",
                    img.height, img.width, self.out.1, self.out.0
                ),
            });
        }
        Ok(img)
    }

    /// The number of values [`Preprocessor::apply`] returns: `C * H * W` at the model's size.
    pub fn output_len(&self) -> usize {
        self.channels * self.out.0 as usize * self.out.1 as usize
    }

    /// `[C, H, W]` f32 pixel values.
    pub fn apply(&self, image: &Image) -> Result<Vec<f32>> {
        let img = self.prepare(image)?;
        Ok(self.normalise(&img))
    }

    /// Rescale and normalise an image already at the model's size and channels -> `[C, H, W]`.
    pub fn normalise(&self, img: &Image) -> Vec<f32> {
        let (c, hw) = (self.channels, img.width as usize * img.height as usize);
        let mut out = vec![0.0f32; c * hw];
        for ch in 0..c {
            for p in 0..hw {
                let mut v = img.data[p * c + ch] as f32;
                if self.config.do_rescale {
                    v = (v as f64 * self.config.rescale_factor) as f32;
                }
                if self.config.do_normalize {
                    v = (v - self.mean[ch]) / self.std[ch];
                }
                out[ch * hw + p] = v;
            }
        }
        out
    }
}
