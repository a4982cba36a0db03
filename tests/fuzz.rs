//! Fuzzing every parser of untrusted input: a seeded mutation loop over real seed files (the
//! fixtures' HF, f16, bf16 and timm checkpoints, the embedded model, exported models, images
//! of every decoded format and colour type), on stable Rust.
//!
//! Targets: `weights` (model.safetensors through the loader: header, dtypes, offsets, sizes),
//! `config` (HF `config.json`), `timm` (timm's `config.json`), `preprocessor`
//! (`preprocessor_config.json`), `export` (an exported model's files read back) and `image`
//! (decoding and preprocessing). Each execution must return (an `Ok` or a typed error): a panic
//! is a failure, saved under `target/fuzz-crashes/`. Every model that loads is exported and
//! read back, and must come back identical. Memory is bounded up front: each execution's peak
//! allocation (counted by this binary's allocator, per thread) must stay within the target's
//! budget, so a header or tensor larger than the file or an image above the size caps must be
//! refused before allocating.
//!
//! `make test` runs a short seeded run (`FUZZ_EXECS`, default 1,500 per target). The long run:
//! `make fuzz` (10^6 executions per target, `FUZZ_EXECS` and `FUZZ_SEED` to change).
#![cfg(not(target_arch = "wasm32"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Once;
use std::time::Instant;

use flops_web::model::preprocess::{MAX_DECODE_BYTES, MAX_IMAGE_PIXELS};
use flops_web::model::{Image, LoadOptions, Model, ModelFiles, Preprocessor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

// ---- Per-thread allocation accounting ------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: a thread's last deallocations may come after its locals are gone.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add_signed(delta);
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the peak bytes it allocated beyond what was live before it.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    PEAK.with(Cell::get) - base
}

// ---- Seeds -------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> Vec<u8> {
    let p = root().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A model folder's files.
#[derive(Clone)]
struct Folder {
    config: Vec<u8>,
    weights: Vec<u8>,
    preprocessor: Option<Vec<u8>>,
}

impl Folder {
    fn of(dir: &str) -> Self {
        let pre = root().join(dir).join("preprocessor_config.json");
        Self {
            config: read(&format!("{dir}/config.json")),
            weights: read(&format!("{dir}/model.safetensors")),
            preprocessor: std::fs::read(pre).ok(),
        }
    }

    fn files(&self) -> ModelFiles<'_> {
        ModelFiles {
            config: Some(&self.config),
            weights: Some(&self.weights),
            preprocessor: self.preprocessor.as_deref(),
        }
    }
}

fn hf_folders() -> Vec<Folder> {
    [
        "tests/fixtures/tiny_vit_hf",
        "tests/fixtures/tiny_vit_hf_f16",
        "tests/fixtures/tiny_vit_hf_bf16",
    ]
    .into_iter()
    .map(Folder::of)
    .collect()
}

fn exported_folders() -> Vec<Folder> {
    let mut out = Vec::new();
    for f in hf_folders().iter().chain([&Folder::of("tests/fixtures/tiny_vit_timm")]) {
        let m = Model::load(f.files(), &LoadOptions::default()).expect("fixture loads");
        let e = m.export().expect("exports");
        out.push(Folder {
            config: e.config.into_bytes(),
            weights: e.weights,
            preprocessor: Some(e.preprocessor.into_bytes()),
        });
    }
    out
}

/// Images of every format the decoder takes and several colour types: the fixtures (gray and
/// palette PNG, colour PNG, JPEG) and encoded here (16-bit, RGBA, BMP, GIF).
fn image_seeds() -> Vec<Vec<u8>> {
    let dir = root().join("tests/fixtures/images");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("fixture images")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let encode = |img: image::DynamicImage, format: image::ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encodes");
        out.into_inner()
    };
    let gradient =
        |w: u32, h: u32| image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8 * 9, y as u8 * 7, 128, 200]));
    seeds.push(encode(
        image::DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(19, 13, |x, y| {
            image::Luma([(x * 3000 + y * 100) as u16])
        })),
        image::ImageFormat::Png,
    ));
    seeds.push(encode(
        image::DynamicImage::ImageRgba8(gradient(17, 11)),
        image::ImageFormat::Png,
    ));
    seeds.push(encode(
        image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(gradient(15, 9)).to_rgb8()),
        image::ImageFormat::Bmp,
    ));
    seeds.push(encode(
        image::DynamicImage::ImageRgba8(gradient(12, 10)),
        image::ImageFormat::Gif,
    ));
    seeds
}

// ---- Mutations ---------------------------------------------------------------------------

const INTERESTING: [u64; 10] = [0, 1, 2, 7, 0x7F, 0x80, 0xFF, 0xFFFF, u32::MAX as u64, u64::MAX];

/// One byte-level mutation of `data` (splicing from `others`).
fn mutate_bytes(rng: &mut StdRng, data: &mut Vec<u8>, others: &[Vec<u8>], focus: usize) {
    // Most mutations land in the first `focus` bytes (a header), where the parsing is.
    let pos = |rng: &mut StdRng, len: usize| {
        if len == 0 {
            0
        } else if rng.random_bool(0.8) {
            rng.random_range(0..len.min(focus.max(1)))
        } else {
            rng.random_range(0..len)
        }
    };
    match rng.random_range(0..9) {
        0 if !data.is_empty() => {
            let i = pos(rng, data.len());
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 if !data.is_empty() => {
            let i = pos(rng, data.len());
            data[i] = INTERESTING[rng.random_range(0..7)] as u8;
        }
        2 if data.len() >= 8 => {
            let i = pos(rng, data.len() - 7);
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
            let v = if rng.random_bool(0.5) {
                v
            } else {
                v.wrapping_add(rng.random_range(0..64))
            };
            let width = [2, 4, 8][rng.random_range(0..3)];
            let bytes = if rng.random_bool(0.5) {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            data[i..i + width].copy_from_slice(&bytes[..width]);
        }
        3 => {
            let i = pos(rng, data.len() + 1).min(data.len());
            let n = rng.random_range(1..32);
            let fill: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(i..i, fill);
        }
        4 if !data.is_empty() => {
            let i = pos(rng, data.len());
            let n = rng.random_range(1..=(data.len() - i).min(64));
            data.drain(i..i + n);
        }
        5 if !data.is_empty() => {
            let i = pos(rng, data.len());
            let n = rng.random_range(1..=(data.len() - i).min(64));
            let chunk = data[i..i + n].to_vec();
            let j = pos(rng, data.len());
            data.splice(j..j, chunk);
        }
        6 => {
            let cut = rng.random_range(0..=data.len());
            data.truncate(cut);
        }
        7 if !others.is_empty() => {
            let o = &others[rng.random_range(0..others.len())];
            if !o.is_empty() && !data.is_empty() {
                let i = rng.random_range(0..o.len());
                let n = rng.random_range(1..=(o.len() - i).min(256));
                let j = pos(rng, data.len());
                let end = (j + n).min(data.len());
                data.splice(j..end, o[i..i + n].iter().copied());
            }
        }
        _ => {
            if !data.is_empty() {
                let i = pos(rng, data.len());
                data[i] = rng.random();
            }
        }
    }
}

/// A random node of `v` (each level descended with probability 0.6).
fn pick<'a>(rng: &mut StdRng, v: &'a mut Value) -> &'a mut Value {
    let descend = rng.random_bool(0.6);
    let key = match &*v {
        Value::Object(m) if descend && !m.is_empty() => m.keys().nth(rng.random_range(0..m.len())).cloned().map(Ok),
        Value::Array(a) if descend && !a.is_empty() => Some(Err(rng.random_range(0..a.len()))),
        _ => None,
    };
    match key {
        Some(Ok(k)) => pick(rng, &mut v[k.as_str()]),
        Some(Err(i)) => pick(rng, &mut v[i]),
        None => v,
    }
}

/// One structural mutation of a JSON value: a random node replaced, removed, duplicated or
/// re-typed.
fn mutate_json(rng: &mut StdRng, v: &mut Value) {
    let node = pick(rng, v);
    let numbers: [Value; 12] = [
        0.into(),
        1.into(),
        (-1).into(),
        2.into(),
        3.into(),
        4096.into(),
        (1u64 << 31).into(),
        (1u64 << 32).into(),
        u64::MAX.into(),
        i64::MIN.into(),
        serde_json::json!(1e300),
        serde_json::json!(0.5),
    ];
    match (rng.random_range(0..7), &mut *node) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(rng.random_range(0..m.len())).cloned().unwrap();
            m.remove(&k);
        }
        (1, Value::Object(m)) => {
            let keys = [
                "hidden_size",
                "id2label",
                "image_size",
                "patch_size",
                "dtype",
                "shape",
                "data_offsets",
                "size",
                "crop_size",
                "do_center_crop",
                "num_classes",
                "input_size",
                "__metadata__",
            ];
            m.insert(
                keys[rng.random_range(0..keys.len())].into(),
                numbers[rng.random_range(0..12)].clone(),
            );
        }
        (2, Value::Array(a)) => match rng.random_range(0..3) {
            0 => a.clear(),
            1 if !a.is_empty() => {
                let x = a[rng.random_range(0..a.len())].clone();
                a.push(x);
            }
            _ => {
                a.pop();
            }
        },
        (3, Value::String(s)) => {
            let strings = [
                "",
                "F32",
                "F16",
                "BF16",
                "F64",
                "I64",
                "U8",
                "BOOL",
                "gelu",
                "relu",
                "0",
                "shortest_edge",
            ];
            *s = strings[rng.random_range(0..strings.len())].into();
        }
        (4, _) => *node = numbers[rng.random_range(0..12)].clone(),
        (5, _) => {
            *node = match rng.random_range(0..4) {
                0 => Value::Null,
                1 => Value::Bool(rng.random()),
                2 => Value::Array(vec![numbers[rng.random_range(0..12)].clone()]),
                _ => Value::String("x".into()),
            }
        }
        // Anything else (and a number): a number.
        _ => *node = numbers[rng.random_range(0..12)].clone(),
    }
}

/// A mutated JSON file: structural mutations when it parses (mostly), else bytes.
fn mutate_json_bytes(rng: &mut StdRng, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    if rng.random_bool(0.75) {
        if let Ok(mut v) = serde_json::from_slice::<Value>(data) {
            for _ in 0..rng.random_range(1..=3) {
                mutate_json(rng, &mut v);
            }
            return serde_json::to_vec(&v).unwrap();
        }
    }
    let mut out = data.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        mutate_bytes(rng, &mut out, others, usize::MAX);
    }
    out
}

/// A mutated safetensors file: its JSON header mutated and re-framed (with the right length
/// prefix, mostly), or bytes mutated around the header.
fn mutate_safetensors(rng: &mut StdRng, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let header_len = data
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
        .filter(|&n| n <= data.len().saturating_sub(8));
    if let (Some(n), true) = (header_len, rng.random_bool(0.6)) {
        if let Ok(mut v) = serde_json::from_slice::<Value>(&data[8..8 + n]) {
            for _ in 0..rng.random_range(1..=3) {
                mutate_json(rng, &mut v);
            }
            let mut header = serde_json::to_vec(&v).unwrap();
            // safetensors pads headers with spaces to a multiple of 8.
            while rng.random_bool(0.7) && !header.len().is_multiple_of(8) {
                header.push(b' ');
            }
            let len = if rng.random_bool(0.9) {
                header.len() as u64
            } else {
                INTERESTING[rng.random_range(0..INTERESTING.len())]
            };
            let mut out = len.to_le_bytes().to_vec();
            out.extend(header);
            out.extend_from_slice(&data[8 + n..]);
            return out;
        }
    }
    let mut out = data.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        mutate_bytes(rng, &mut out, others, 8 + header_len.unwrap_or(256));
    }
    out
}

// ---- Targets -------------------------------------------------------------------------------

/// Loads a folder; a model that loads must export and read back identically. Whether it loaded.
fn load_round_trip(f: &Folder) -> bool {
    let Ok(m) = Model::load(f.files(), &LoadOptions::default()) else {
        return false;
    };
    let e = m.export().expect("a loaded model exports");
    let back = Model::load(e.files(), &LoadOptions::default()).expect("an exported model loads");
    assert_eq!(back.net.config, m.net.config, "config survives export");
    for (a, b) in m.net.params().iter().zip(back.net.params()) {
        assert!(a.name == b.name && a.shape == b.shape, "{} survives export", a.name);
        assert!(
            a.data.iter().zip(&b.data).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{} values survive export",
            a.name
        );
    }
    assert_eq!(back.preprocessor.output_len(), m.preprocessor.output_len());
    true
}

/// One execution, ready to run: whether its input was accepted.
type Run = Box<dyn Fn() -> bool>;
/// Makes one execution's input (mutated from the seeds) and its run.
type Exec = Box<dyn Fn(&mut StdRng) -> (Vec<u8>, Run)>;

struct Target {
    name: &'static str,
    /// Peak allocation allowed per execution, given its input's size.
    budget: fn(usize) -> usize,
    /// One execution on a mutated input, from the seeds: the input and the run, which says
    /// whether the input was accepted.
    exec: Exec,
}

/// Model inputs: a few times the input (f16 and bf16 widen to f32; export copies), plus slack.
fn model_budget(input: usize) -> usize {
    (64 << 20) + 24 * input
}

fn model_target(
    name: &'static str,
    folders: Vec<Folder>,
    which: fn(&mut Folder) -> &mut Vec<u8>,
    json: bool,
) -> Target {
    let pool: Vec<Vec<u8>> = folders.iter().cloned().map(|mut f| which(&mut f).clone()).collect();
    Target {
        name,
        budget: model_budget,
        exec: Box::new(move |rng| {
            let mut f = folders[rng.random_range(0..folders.len())].clone();
            let file = which(&mut f);
            *file = if json {
                mutate_json_bytes(rng, file, &pool)
            } else {
                mutate_safetensors(rng, file, &pool)
            };
            let input = [&f.config[..], &f.weights, f.preprocessor.as_deref().unwrap_or(&[])].concat();
            (input, Box::new(move || load_round_trip(&f)))
        }),
    }
}

fn targets() -> Vec<Target> {
    let mut hf = hf_folders();
    hf.push(Folder {
        config: ModelFiles::embedded().config.unwrap().to_vec(),
        weights: ModelFiles::embedded().weights.unwrap().to_vec(),
        preprocessor: ModelFiles::embedded().preprocessor.map(<[u8]>::to_vec),
    });
    let timm = vec![Folder::of("tests/fixtures/tiny_vit_timm")];
    let with_pre: Vec<Folder> = hf.iter().filter(|f| f.preprocessor.is_some()).cloned().collect();
    let images = image_seeds();
    let tiny = Model::load(hf[0].files(), &LoadOptions::default()).unwrap();
    let pres: Vec<Preprocessor> = vec![
        tiny.preprocessor.clone(),
        Model::embedded_default().unwrap().preprocessor,
    ];
    vec![
        model_target("weights", hf.clone(), |f| &mut f.weights, false),
        model_target("config", hf.clone(), |f| &mut f.config, true),
        model_target("timm", timm, |f| &mut f.config, true),
        model_target("preprocessor", with_pre, |f| f.preprocessor.as_mut().unwrap(), true),
        model_target("export", exported_folders(), |f| &mut f.weights, false),
        Target {
            name: "image",
            // The decoder's cap, its RGB copy at the pixel cap, and slack.
            budget: |input| MAX_DECODE_BYTES as usize + 3 * MAX_IMAGE_PIXELS as usize + (16 << 20) + 4 * input,
            exec: Box::new(move |rng| {
                let mut img = images[rng.random_range(0..images.len())].clone();
                for _ in 0..rng.random_range(1..=4) {
                    mutate_bytes(rng, &mut img, &images, 64);
                }
                let pre = pres[rng.random_range(0..pres.len())].clone();
                let input = img.clone();
                (
                    input,
                    Box::new(move || match Image::decode(&img) {
                        Ok(i) => {
                            let x = pre.apply(&i).expect("a decoded image preprocesses");
                            assert_eq!(x.len(), pre.output_len());
                            true
                        }
                        Err(_) => false,
                    }),
                )
            }),
        },
    ]
}

/// What a run of one target found.
struct Report {
    accepted: u64,
    failures: Vec<String>,
    max_peak: usize,
}

/// Runs `execs` executions of `target` from `seed`.
fn fuzz(target: &Target, execs: u64, seed: u64) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut failures = Vec::new();
    let mut max_peak = 0usize;
    let mut accepted = 0;
    let crash_dir = root().join("target/fuzz-crashes");
    let save_current = std::env::var_os("FUZZ_SAVE_CURRENT").is_some();
    for i in 0..execs {
        let (input, run) = (target.exec)(&mut rng);
        if save_current {
            // An execution that aborts the process (an allocation the system refuses) leaves
            // its input here.
            let _ = std::fs::create_dir_all(&crash_dir);
            let _ = std::fs::write(crash_dir.join(format!("current-{}.bin", target.name)), &input);
        }
        let mut outcome = Ok(false);
        let peak = peak_of(|| outcome = catch_unwind(AssertUnwindSafe(run)));
        accepted += matches!(outcome, Ok(true)) as u64;
        max_peak = max_peak.max(peak);
        let budget = (target.budget)(input.len());
        let failure = match outcome {
            Err(p) => Some(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
            Ok(_) if peak > budget => Some(format!("allocated {peak} bytes, over its budget of {budget}")),
            Ok(_) => None,
        };
        if let Some(f) = failure {
            let _ = std::fs::create_dir_all(&crash_dir);
            let path = crash_dir.join(format!("{}-{seed}-{i}.bin", target.name));
            let _ = std::fs::write(&path, &input);
            failures.push(format!("{} (input {})", f, path.display()));
        }
    }
    Report {
        accepted,
        failures,
        max_peak,
    }
}

/// An environment variable as a whole number (`default` when unset; a typo is an error, not
/// a silent default).
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a whole number such as 1000000")),
    }
}

fn execs() -> u64 {
    env_number("FUZZ_EXECS", 1_500)
}

fn seed() -> u64 {
    env_number("FUZZ_SEED", 1)
}

thread_local! {
    static FUZZING: Cell<bool> = const { Cell::new(false) };
}

fn run_target(name: &str) {
    // Panics inside executions are caught and reported with their input: keep their messages
    // off the console (the hook is process-wide; the flag is per thread).
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !FUZZING.with(Cell::get) {
                default(info)
            }
        }));
    });
    let all = targets();
    let target = all.iter().find(|t| t.name == name).expect("a target");
    let t0 = Instant::now();
    FUZZING.with(|f| f.set(true));
    let r = fuzz(target, execs(), seed());
    FUZZING.with(|f| f.set(false));
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"target\": \"{name}\", \"executions\": {}, \"accepted\": {}, \"seed\": {}, \"failures\": {}, \"max_peak_bytes\": {}, \"seconds\": {secs:.1}}}",
        execs(),
        r.accepted,
        seed(),
        r.failures.len(),
        r.max_peak
    );
    assert!(
        r.failures.is_empty(),
        "{name}: {} failures:\n{}",
        r.failures.len(),
        r.failures.join("\n")
    );
    // A target whose mutants never get through tests only the first checks (the long run
    // accepted 1.8% to 16% per target).
    assert!(
        r.accepted * 100 >= execs(),
        "{name}: only {} of {} inputs accepted: the seeds or the mutations are broken",
        r.accepted,
        execs()
    );
}

#[test]
fn fuzz_weights() {
    run_target("weights");
}

#[test]
fn fuzz_config() {
    run_target("config");
}

#[test]
fn fuzz_timm_config() {
    run_target("timm");
}

#[test]
fn fuzz_preprocessor_config() {
    run_target("preprocessor");
}

#[test]
fn fuzz_exported_model() {
    run_target("export");
}

#[test]
fn fuzz_image() {
    run_target("image");
}

/// The size caps hold before allocating: a PNG of a few hundred kilobytes that claims
/// 20,000 x 20,000 pixels is refused by name within 1 MiB; a truncated JPEG is refused.
#[test]
fn huge_and_truncated_images_are_refused_up_front() {
    // IHDR of 20,000 x 20,000 gray and a few rows of IDAT: a few hundred bytes.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |out: &mut Vec<u8>, kind: &[u8], body: &[u8]| {
        out.extend((body.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(body);
        let crc = crc32fast::hash(&out[start..]);
        out.extend(crc.to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(20_000u32.to_be_bytes());
    ihdr.extend(20_000u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut png, b"IEND", &[]);
    let mut result = None;
    let peak = peak_of(|| result = Some(Image::decode(&png)));
    let e = result.unwrap().unwrap_err().to_string();
    assert!(e.contains("20000x20000") && e.contains("400 megapixels"), "{e}");
    assert!(peak < 1 << 20, "refusing it allocated {peak} bytes");

    let jpg = read("tests/fixtures/images/tall-colour-37x83.jpg");
    assert!(Image::decode(&jpg).is_ok());
    let e = Image::decode(&jpg[..jpg.len() * 2 / 3]).unwrap_err().to_string();
    assert!(e.contains("truncated JPEG"), "{e}");
    // Data after the end marker (a Motion Photo's video), start-of-scan bytes in it included,
    // is not a truncation.
    let mut trailing = jpg.clone();
    trailing.extend([0xFF, 0xDA, 0x00, 0x04, 1, 2, 0xFF, 0xD8, 9, 9, 0xFF, 0xDA, 7]);
    assert!(Image::decode(&trailing).is_ok(), "a JPEG with trailing data");
    // Stray bytes between two segments (after SOI and APP0) are skipped, as libjpeg does.
    let app0 = 4 + u16::from_be_bytes([jpg[4], jpg[5]]) as usize;
    let stray = [&jpg[..app0], &[0u8, 0, 0][..], &jpg[app0..]].concat();
    assert!(
        Image::decode(&stray).is_ok(),
        "a JPEG with stray bytes between segments"
    );
    let e = Image::decode(b"just some text, named .png").unwrap_err().to_string();
    assert!(e.contains("unknown image format"), "{e}");
}
