//! The compute backends of the learning core's [`Backend`](crate::learn::backend::Backend)
//! trait: [`cpu::CpuBackend`] (the reference forward, the oracle, the fallback where there is
//! no WebGPU) and [`gpu::GpuBackend`] (forwards, gradient and optimiser in WGSL on the
//! [`crate::gpu`] runtime). What both need is written here once: the frozen-feature cache and
//! the host-side parameter reads and writes with their frozen-tensor check.
//!
//! Layering: `model` <- `learn` <- `backend` <- `web`, the CLI; the GPU runtime (`gpu`) imports
//! the model only.

pub mod cpu;
pub mod gpu;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::learn::backend::FEATURE_CACHE_BYTES;
use crate::learn::LearnError;
use crate::model::{ParamTable, ViTForImageClassification};

/// Per image (keyed by its pixels): the residual stream entering the frozen boundary `first`,
/// kept wherever the backend keeps features (`T`: host vectors, device tensors). Blocks below
/// `first` never change during a run, so the stream is a pure function of the pixels.
pub struct FeatureCache<T> {
    /// The block the kept streams enter; 0: nothing is kept (block 0 reads the embeddings).
    pub first: usize,
    images: HashMap<u64, (Vec<f32>, T)>,
    bytes: usize,
}

impl<T> Default for FeatureCache<T> {
    fn default() -> Self {
        Self {
            first: 0,
            images: HashMap::new(),
            bytes: 0,
        }
    }
}

fn key(pixels: &[f32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pixels.iter().for_each(|p| p.to_bits().hash(&mut h));
    h.finish()
}

impl<T> FeatureCache<T> {
    /// Forgets every kept stream; keeps streams entering `first` from now on.
    pub fn reset(&mut self, first: usize) {
        *self = Self {
            first,
            ..Self::default()
        };
    }

    /// Whether streams entering `block` are kept here.
    pub fn serves(&self, block: usize) -> bool {
        self.first > 0 && block == self.first
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The kept stream of `pixels` (pixels compared on a hash hit).
    pub fn get(&self, pixels: &[f32]) -> Option<&T> {
        self.images
            .get(&key(pixels))
            .filter(|(px, _)| px.as_slice() == pixels)
            .map(|(_, t)| t)
    }

    /// Whether a stream of `bytes` (plus the pixels) for `pixels` would be kept: the cache is
    /// under [`FEATURE_CACHE_BYTES`] and no other image holds its key (on a hash collision the
    /// first image keeps it).
    pub fn admits(&self, pixels: &[f32], bytes: usize) -> bool {
        self.bytes + bytes + 4 * pixels.len() <= FEATURE_CACHE_BYTES && !self.images.contains_key(&key(pixels))
    }

    /// Keeps `value` (`bytes` large) for `pixels` if [`FeatureCache::admits`] says so.
    pub fn insert(&mut self, pixels: &[f32], value: T, bytes: usize) {
        if self.admits(pixels, bytes) {
            self.bytes += bytes + 4 * pixels.len();
            self.images.insert(key(pixels), (pixels.to_vec(), value));
        }
    }

    /// Empties the cache when writing `tensors` changes what it holds (a tensor below the
    /// boundary, an embedding, or an unknown id).
    pub fn invalidate_for(&mut self, table: &ParamTable, tensors: &[u32]) {
        if tensors.iter().any(|&t| table.is_below(t, self.first)) {
            self.reset(self.first);
        }
    }
}

fn no_tensor(t: u32) -> LearnError {
    LearnError::Config {
        message: format!("no tensor {t}"),
    }
}

/// The host copies of `tensors`, flat in that order.
pub fn read_host(net: &ViTForImageClassification, tensors: &[u32]) -> Result<Vec<f32>, LearnError> {
    let params = net.params();
    let len = tensors
        .iter()
        .filter_map(|&t| params.get(t as usize))
        .map(|p| p.numel())
        .sum();
    let mut out = Vec::with_capacity(len);
    for &t in tensors {
        out.extend_from_slice(&params.get(t as usize).ok_or_else(|| no_tensor(t))?.data);
    }
    Ok(out)
}

/// Writes `flat` (tensors `tensors` in that order) into the host copy; `also` sees each
/// tensor's new values (a device backend uploads them). Checks every id and the length first,
/// so a bad call changes nothing.
pub fn write_host(
    net: &mut ViTForImageClassification,
    tensors: &[u32],
    flat: &[f32],
    mut also: impl FnMut(u32, &[f32]) -> Result<(), LearnError>,
) -> Result<(), LearnError> {
    let mut params = net.params_mut();
    let mut need = 0;
    for &t in tensors {
        need += params.get(t as usize).ok_or_else(|| no_tensor(t))?.numel();
    }
    if flat.len() != need {
        return Err(LearnError::Config {
            message: format!("{} parameter values for tensors of {need}", flat.len()),
        });
    }
    let mut off = 0;
    for &t in tensors {
        let p = &mut params[t as usize];
        let n = p.data.len();
        let src = &flat[off..off + n];
        also(t, src)?;
        p.data.copy_from_slice(src);
        off += n;
    }
    Ok(())
}
