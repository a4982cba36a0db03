//! Labelled image datasets: the embedded Animal-Shape split (IDX files) and folders of class
//! subfolders (the caller reads the files; bad files are reported by name and skipped).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::error::LearnError;
use crate::model::{Image, Preprocessor};

/// Images with integer labels into `classes`.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub images: Vec<Image>,
    pub labels: Vec<usize>,
}

/// A file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

fn data_err(message: impl Into<String>) -> LearnError {
    LearnError::Data {
        message: message.into(),
    }
}

/// The embedded Animal-Shape-MNIST split (assets/animal-shape, MIT; see its README).
/// The embedded Animal-Shape files (native builds only: the browser fetches them as same-origin
/// assets when asked for, so they stay out of the wasm).
#[cfg(not(target_arch = "wasm32"))]
pub mod animal_shape {
    use super::AnimalShapeFiles;

    pub const FILES: AnimalShapeFiles<'static> = AnimalShapeFiles {
        train_images: include_bytes!("../../assets/animal-shape/train-images.idx3-ubyte"),
        train_labels: include_bytes!("../../assets/animal-shape/train-labels.idx1-ubyte"),
        test_images: include_bytes!("../../assets/animal-shape/test-images.idx3-ubyte"),
        test_labels: include_bytes!("../../assets/animal-shape/test-labels.idx1-ubyte"),
        classes_json: include_bytes!("../../assets/animal-shape/classes.json"),
    };
}

/// The five files of the Animal-Shape split (`assets/animal-shape/`): IDX images and labels of
/// the train and test splits, and `classes.json`.
#[derive(Debug, Clone, Copy)]
pub struct AnimalShapeFiles<'a> {
    pub train_images: &'a [u8],
    pub train_labels: &'a [u8],
    pub test_images: &'a [u8],
    pub test_labels: &'a [u8],
    pub classes_json: &'a [u8],
}

impl AnimalShapeFiles<'_> {
    /// The file names, in field order (as served under `data/animal-shape/`).
    pub const NAMES: [&'static str; 5] = [
        "train-images.idx3-ubyte",
        "train-labels.idx1-ubyte",
        "test-images.idx3-ubyte",
        "test-labels.idx1-ubyte",
        "classes.json",
    ];

    /// The (train, test) split.
    pub fn parse(&self) -> Result<(Dataset, Dataset), LearnError> {
        let classes: Vec<String> =
            serde_json::from_slice(self.classes_json).map_err(|e| data_err(format!("classes.json: {e}")))?;
        Ok((
            Dataset::from_idx(self.train_images, self.train_labels, classes.clone())?,
            Dataset::from_idx(self.test_images, self.test_labels, classes)?,
        ))
    }
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The embedded Animal-Shape (train, test) split (native builds).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn animal_shape() -> Result<(Dataset, Dataset), LearnError> {
        animal_shape::FILES.parse()
    }

    /// Parses IDX files (MNIST's format): images `[N, H, W]` u8 (magic 0x0803), labels `[N]` u8 (0x0801).
    pub fn from_idx(images: &[u8], labels: &[u8], classes: Vec<String>) -> Result<Self, LearnError> {
        let header = |b: &[u8], magic: u32, dims: usize, what: &str| -> Result<Vec<usize>, LearnError> {
            let need = 4 + 4 * dims;
            if b.len() < need {
                return Err(data_err(format!(
                    "{what}: {} bytes is too short for an IDX header",
                    b.len()
                )));
            }
            let word = |i: usize| u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
            if word(0) != magic {
                return Err(data_err(format!(
                    "{what}: IDX magic {:#010x}, expected {magic:#010x}",
                    word(0)
                )));
            }
            let shape: Vec<usize> = (1..=dims).map(|i| word(i) as usize).collect();
            let n: usize = shape.iter().product();
            if b.len() != need + n {
                return Err(data_err(format!(
                    "{what}: {} bytes of data for shape {shape:?}",
                    b.len() - need
                )));
            }
            Ok(shape)
        };
        let ishape = header(images, 0x0803, 3, "images")?;
        let lshape = header(labels, 0x0801, 1, "labels")?;
        if ishape[0] != lshape[0] {
            return Err(data_err(format!("{} images but {} labels", ishape[0], lshape[0])));
        }
        let (h, w) = (ishape[1], ishape[2]);
        let labels: Vec<usize> = labels[8..].iter().map(|&l| l as usize).collect();
        if let Some(&bad) = labels.iter().find(|&&l| l >= classes.len()) {
            return Err(data_err(format!("label {bad} but only {} classes", classes.len())));
        }
        let images = images[16..]
            .chunks_exact(h * w)
            .map(|px| Image::from_raw(w as u32, h as u32, 1, px.to_vec()))
            .collect::<Result<_, _>>()?;
        let ds = Self {
            classes,
            images,
            labels,
        };
        Ok(ds)
    }

    /// A dataset from `(class name, file name, bytes)` records, e.g. a folder with one subfolder
    /// per class. Classes are sorted by name; files that do not decode are skipped and reported.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
    ) -> Result<(Self, Vec<Skipped>), LearnError> {
        let mut decoded = Vec::new();
        let mut skipped = Vec::new();
        for (class, name, bytes) in files {
            match Image::decode(bytes) {
                Ok(img) => decoded.push((class.to_owned(), img)),
                Err(e) => skipped.push(Skipped {
                    name: name.to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        let mut classes: Vec<String> = decoded.iter().map(|(c, _)| c.clone()).collect();
        classes.sort();
        classes.dedup();
        let labels = decoded
            .iter()
            .map(|(c, _)| classes.binary_search(c).expect("class listed"))
            .collect();
        let ds = Self {
            classes,
            images: decoded.into_iter().map(|(_, i)| i).collect(),
            labels,
        };
        Ok((ds, skipped))
    }

    /// Errors unless the dataset can train a classifier: at least 2 classes with images.
    pub fn check_trainable(&self) -> Result<(), LearnError> {
        if self.is_empty() {
            return Err(data_err("no usable images"));
        }
        let counts = self.class_counts();
        let present = counts.iter().filter(|&&c| c > 0).count();
        if present < 2 {
            return Err(data_err(format!(
                "only {} class with images ({}); a classifier needs at least 2",
                present,
                self.classes
                    .iter()
                    .zip(&counts)
                    .filter(|(_, &c)| c > 0)
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.classes.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// A stratified split: about `fraction` of every class goes to the second set (at least one
    /// image per class with 2+ images), chosen by `seed`.
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let (keep, held) = stratified_split(&self.labels, self.classes.len(), fraction, seed);
        let pick = |idx: Vec<usize>| Dataset {
            classes: self.classes.clone(),
            images: idx.iter().map(|&i| self.images[i].clone()).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        };
        (pick(keep), pick(held))
    }

    /// The first `n` images per class, in order (a balanced subset).
    pub fn take_per_class(&self, n: usize) -> Dataset {
        let mut out = Dataset {
            classes: self.classes.clone(),
            ..Default::default()
        };
        let mut counts = vec![0usize; self.classes.len()];
        for (img, &l) in self.images.iter().zip(&self.labels) {
            if counts[l] < n {
                counts[l] += 1;
                out.images.push(img.clone());
                out.labels.push(l);
            }
        }
        out
    }
}

/// The one stratified split: about `fraction` of every class with 2+ examples is held out
/// (at least 1, never all; none when `fraction` is 0), shuffled by `seed`. Returns the indices
/// kept and held out, class by class.
pub fn stratified_split(labels: &[usize], classes: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut keep, mut held) = (Vec::new(), Vec::new());
    for class in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        idx.shuffle(&mut rng);
        let k = if idx.len() >= 2 && fraction > 0.0 {
            ((idx.len() as f64 * fraction).round() as usize).clamp(1, idx.len() - 1)
        } else {
            0
        };
        held.extend_from_slice(&idx[..k]);
        keep.extend_from_slice(&idx[k..]);
    }
    (keep, held)
}

/// Preprocessed images with their labels, ready for batches: `[N, C, H, W]` f32 at the model's
/// input size (3 KB an image for the default 28x28 model), never decoded bitmaps. The trainer,
/// the CLI and the page all keep examples this way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Examples {
    /// `[N, C, H, W]`.
    pub pixels: Vec<f32>,
    pub labels: Vec<usize>,
    pub image_len: usize,
}

impl Examples {
    /// No examples yet, of `image_len` values each.
    pub fn new(image_len: usize) -> Self {
        Self {
            image_len,
            ..Default::default()
        }
    }

    /// Every image of `data`, preprocessed by `pre`.
    pub fn prepare(data: &Dataset, pre: &Preprocessor) -> Result<Self, LearnError> {
        let mut out = Self::new(pre.output_len());
        for (img, &label) in data.images.iter().zip(&data.labels) {
            out.push(&pre.apply(img)?, label);
        }
        Ok(out)
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

    /// Examples per class (labels at or above `classes` are not counted).
    pub fn counts(&self, classes: usize) -> Vec<usize> {
        let mut c = vec![0; classes];
        for &l in &self.labels {
            if l < classes {
                c[l] += 1;
            }
        }
        c
    }

    /// The examples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Self {
        let mut out = Self::new(self.image_len);
        out.pixels.reserve(idx.len() * self.image_len);
        for &i in idx {
            out.push(self.image(i), self.labels[i]);
        }
        out
    }

    /// Removes every example of `class` and renumbers the classes above it.
    pub fn remove_class(&mut self, class: usize) {
        let keep: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] != class).collect();
        let mut out = self.select(&keep);
        out.labels.iter_mut().filter(|l| **l > class).for_each(|l| *l -= 1);
        *self = out;
    }

    /// The [`stratified_split`] of these examples: (kept, held out).
    pub fn split(&self, classes: usize, fraction: f64, seed: u64) -> (Self, Self) {
        let (keep, held) = stratified_split(&self.labels, classes, fraction, seed);
        (self.select(&keep), self.select(&held))
    }

    /// The batch at `idx`: pixels and labels.
    pub fn gather(&self, idx: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let b = self.select(idx);
        (b.pixels, b.labels)
    }
}
