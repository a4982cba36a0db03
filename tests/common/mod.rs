//! Shared test helpers: fixture reading and closeness checks that report the worst element.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use flops_web::model::{LoadOptions, Model, ModelFiles};
use safetensors::{Dtype, SafeTensors};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the `flops` binary from the repository root.
pub fn flops(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flops"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run flops")
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (HINT: regenerate with `python scripts/make_fixtures.py`)",
            path.display()
        )
    })
}

/// A golden fixture file (safetensors written by scripts/make_fixtures.py).
pub struct Golden {
    bytes: Vec<u8>,
    pub path: PathBuf,
}

impl Golden {
    pub fn open(name: &str) -> Self {
        let path = fixture(name);
        let g = Self {
            bytes: read(&path),
            path,
        };
        let (_, meta) = SafeTensors::read_metadata(&g.bytes).expect("fixture header");
        let m = meta.metadata().clone().unwrap_or_default();
        assert_eq!(
            m.get("format_version").map(String::as_str),
            Some("1"),
            "{}: stale fixture format (HINT: re-run scripts/make_fixtures.py)",
            g.path.display()
        );
        g
    }

    fn view(&self, name: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("fixture parses");
        let t = st.tensor(name).unwrap_or_else(|_| {
            panic!(
                "{}: no tensor `{name}` (HINT: re-run scripts/make_fixtures.py)",
                self.path.display()
            )
        });
        (t.dtype(), t.shape().to_vec(), t.data().to_vec())
    }

    pub fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (dt, shape, data) = self.view(name);
        assert_eq!(dt, Dtype::F32, "{name}");
        (
            shape,
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        )
    }

    pub fn u8(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        let (dt, shape, data) = self.view(name);
        assert_eq!(dt, Dtype::U8, "{name}");
        (shape, data)
    }

    pub fn i64(&self, name: &str) -> (Vec<usize>, Vec<i64>) {
        let (dt, shape, data) = self.view(name);
        assert_eq!(dt, Dtype::I64, "{name}");
        (
            shape,
            data.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        )
    }
}

/// Cosine of two vectors.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Asserts `|got - want| <= atol + rtol * |want|` elementwise; on failure names the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> f32 {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs expected {}",
        got.len(),
        want.len()
    );
    let mut worst = (0usize, 0.0f32, 0.0f32);
    let mut max_abs = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let excess = err - (atol + rtol * w.abs());
        if !(g.is_finite()) || excess > worst.1 {
            worst = (i, excess.max(f32::MIN_POSITIVE), err);
        }
        max_abs = max_abs.max(err);
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!(
            "{what}: element {i} is {} vs expected {} (|err| {:.3e} > atol {atol:.0e} + rtol {rtol:.0e} * |ref|); max |err| {max_abs:.3e}",
            got[i], want[i], worst.2
        );
    }
    eprintln!("{what}: max |err| {max_abs:.3e} (atol {atol:.0e}, rtol {rtol:.0e})");
    max_abs
}

/// Loads a model folder from disk.
pub fn load_dir(dir: &Path) -> Model {
    let read_opt = |f: &str| std::fs::read(dir.join(f)).ok();
    let (c, w, p) = (
        read_opt("config.json"),
        read_opt("model.safetensors"),
        read_opt("preprocessor_config.json"),
    );
    Model::load(
        ModelFiles {
            config: c.as_deref(),
            weights: w.as_deref(),
            preprocessor: p.as_deref(),
        },
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// The embedded MNIST model with a new head (seeded) for the embedded Animal-Shape classes, and
/// that data's (train, test) split.
pub fn animal_model(head_seed: u64) -> (Model, flops_web::learn::data::Dataset, flops_web::learn::data::Dataset) {
    let (train, test) = flops_web::learn::data::Dataset::animal_shape().expect("embedded Animal-Shape");
    let opts = LoadOptions {
        labels: Some(train.classes.clone()),
        head_seed,
    };
    let model = Model::load(ModelFiles::embedded(), &opts).expect("embedded model");
    (model, train, test)
}

/// The coefficients of `kind`'s estimate from a step's query losses (the trainer's arithmetic).
pub fn coefficients(
    kind: flops_web::learn::EstimatorKind,
    queries: &[flops_web::learn::estimate::Query],
    losses: &[f32],
    baselines: &[f32],
    alloc: &[usize],
) -> Vec<f32> {
    cell_coefficients(kind, queries, losses, baselines, alloc, 1)
}

/// [`coefficients`] of an allocation over `groups` site groups (`alloc[point * groups + g]`).
pub fn cell_coefficients(
    kind: flops_web::learn::EstimatorKind,
    queries: &[flops_web::learn::estimate::Query],
    losses: &[f32],
    baselines: &[f32],
    alloc: &[usize],
    groups: usize,
) -> Vec<f32> {
    kind.build().coefficients(&flops_web::learn::estimate::Results {
        queries,
        losses,
        baselines,
        alloc,
        groups,
    })
}

/// LR coefficients (antithetic or not: the same arithmetic).
pub fn lr_coefficients(
    queries: &[flops_web::learn::estimate::Query],
    losses: &[f32],
    baselines: &[f32],
    alloc: &[usize],
    sigma: f32,
) -> Vec<f32> {
    let kind = flops_web::learn::EstimatorKind::Lr {
        sigma,
        antithetic: false,
    };
    coefficients(kind, queries, losses, baselines, alloc)
}
