//! In-browser tests (wasm-bindgen-test in headless Chromium, WebGPU through wgpu's `webgpu` backend).
//!
//! Run (after `scripts/setup-browser.sh`):
//!   CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=300 \
//!     cargo test --locked --target wasm32-unknown-unknown --test web_forward
//! Browser flags (notably `--enable-unsafe-webgpu`) come from `webdriver.json` at the crate root.
//! In this headless Chromium the adapter is SwiftShader (a CPU fallback): correct, not fast.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Requests the browser's WebGPU adapter only (no WebGL fallback). No adapter is a failure.
async fn webgpu_adapter() -> wgpu::Adapter {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::BROWSER_WEBGPU;
    let instance = wgpu::Instance::new(desc);
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            ..Default::default()
        })
        .await
        .expect("no WebGPU adapter: is Chromium started with --enable-unsafe-webgpu (webdriver.json)?")
}

#[wasm_bindgen_test]
async fn webgpu_adapter_exists_and_computes() {
    console_error_panic_hook::set_once();
    let adapter = webgpu_adapter().await;
    let info = adapter.get_info();
    let limits = adapter.limits();
    console_log!("WebGPU adapter: {info:?}");
    console_log!("adapter features: {:?}", adapter.features());
    console_log!(
        "adapter limits: invocations/workgroup {}, workgroup size {}x{}x{}, workgroup storage {} B, \
         storage binding {} B, buffer {} B, storage buffers/stage {}, workgroups/dim {}",
        limits.max_compute_invocations_per_workgroup,
        limits.max_compute_workgroup_size_x,
        limits.max_compute_workgroup_size_y,
        limits.max_compute_workgroup_size_z,
        limits.max_compute_workgroup_storage_size,
        limits.max_storage_buffer_binding_size,
        limits.max_buffer_size,
        limits.max_storage_buffers_per_shader_stage,
        limits.max_compute_workgroups_per_dimension,
    );
    assert_eq!(info.backend, wgpu::Backend::BrowserWebGpu);

    // A device with the WebGPU default limits (what every browser must give) runs a tiny compute
    // shader end to end: upload, dispatch, copy, map, read back.
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("smoke"),
            required_features: wgpu::Features::empty(),
            required_limits: wgpu::Limits::default(),
            ..Default::default()
        })
        .await
        .expect("request_device with the default limits failed");

    let n = 1000u32;
    let input: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("smoke"),
        source: wgpu::ShaderSource::Wgsl(
            r#"
@group(0) @binding(0) var<storage, read_write> data: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&data)) { data[id.x] = data[id.x] * 2.0 + 1.0; }
}
"#
            .into(),
        ),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("smoke"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bytes = (n as u64) * 4;
    let storage = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("data"),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&storage, 0, bytemuck::cast_slice(&input));
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("smoke"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: storage.as_entire_binding(),
        }],
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("smoke") });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(n.div_ceil(64), 1, 1);
    }
    encoder.copy_buffer_to_buffer(&storage, 0, &readback, 0, bytes);
    queue.submit([encoder.finish()]);

    let (tx, rx) = futures_channel::oneshot::channel();
    readback.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    rx.await.expect("map_async callback dropped").expect("map_async failed");
    let out: Vec<f32> = bytemuck::cast_slice(&readback.get_mapped_range(..).expect("mapped range")).to_vec();
    readback.unmap();
    for (i, (&x, &y)) in input.iter().zip(&out).enumerate() {
        assert_eq!(y, x * 2.0 + 1.0, "element {i}");
    }
    console_log!("smoke compute: {n} elements doubled-plus-one correctly");
}

/// Every WGSL kernel module, as assembled by `flops_web::gpu::shaders::Kernel::source`, compiles
/// in the browser's WGSL compiler (Tint) without errors; warnings are printed.
#[wasm_bindgen_test]
async fn every_kernel_compiles_in_the_browser() {
    use flops_web::gpu::shaders::Kernel;

    console_error_panic_hook::set_once();
    let adapter = webgpu_adapter().await;
    let (device, _queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            required_limits: wgpu::Limits::default(),
            ..Default::default()
        })
        .await
        .expect("request_device");
    let mut failures = Vec::new();
    for kernel in Kernel::ALL {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.file_name()),
            source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
        });
        let info = module.get_compilation_info().await;
        for m in &info.messages {
            let line = format!(
                "{}: {:?}: {} at {:?}",
                kernel.file_name(),
                m.message_type,
                m.message,
                m.location
            );
            console_log!("{line}");
            if m.message_type == wgpu::CompilationMessageType::Error {
                failures.push(line);
            }
        }
        if let Some(e) = scope.pop().await {
            failures.push(format!("{}: {e}", kernel.file_name()));
        }
    }
    assert!(
        failures.is_empty(),
        "WGSL errors in the browser:\n{}",
        failures.join("\n")
    );
    console_log!("{} kernel modules compile", Kernel::ALL.len());
}

/// The default model's files (the wasm library does not embed them; the page fetches them).
const DEFAULT_MODEL: flops_web::model::ModelFiles<'static> = flops_web::model::ModelFiles {
    config: Some(include_bytes!("../assets/default/config.json")),
    weights: Some(include_bytes!("../assets/default/model.safetensors")),
    preprocessor: Some(include_bytes!("../assets/default/preprocessor_config.json")),
};

/// The 15 sample images, embedded so the test needs no file access in the browser.
const SAMPLES: &[(&str, &[u8])] = &[
    ("animal-bird", include_bytes!("../assets/samples/animal-bird.png")),
    ("animal-cat", include_bytes!("../assets/samples/animal-cat.png")),
    ("animal-dog", include_bytes!("../assets/samples/animal-dog.png")),
    (
        "animal-elephant",
        include_bytes!("../assets/samples/animal-elephant.png"),
    ),
    ("animal-giraffe", include_bytes!("../assets/samples/animal-giraffe.png")),
    ("digit-0", include_bytes!("../assets/samples/digit-0.png")),
    ("digit-1", include_bytes!("../assets/samples/digit-1.png")),
    ("digit-2", include_bytes!("../assets/samples/digit-2.png")),
    ("digit-3", include_bytes!("../assets/samples/digit-3.png")),
    ("digit-4", include_bytes!("../assets/samples/digit-4.png")),
    ("digit-5", include_bytes!("../assets/samples/digit-5.png")),
    ("digit-6", include_bytes!("../assets/samples/digit-6.png")),
    ("digit-7", include_bytes!("../assets/samples/digit-7.png")),
    ("digit-8", include_bytes!("../assets/samples/digit-8.png")),
    ("digit-9", include_bytes!("../assets/samples/digit-9.png")),
];

/// GPU and CPU logits must agree to `|gpu - cpu| <= TOL * max(1, |cpu|)` (absolute 1e-4 for
/// logits of magnitude up to 1, relative beyond): f32 on both sides, only summation order differs.
const TOL: f32 = 1e-4;

/// Compares `[rows, classes]` logits; on failure names the worst element.
fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], classes: usize, names: &[&str]) {
    assert_eq!(
        gpu.len(),
        cpu.len(),
        "{what}: {} GPU logits vs {} CPU logits",
        gpu.len(),
        cpu.len()
    );
    let mut worst = (0usize, 0.0f32);
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let err = if g.is_finite() && c.is_finite() {
            (g - c).abs() / c.abs().max(1.0)
        } else {
            f32::INFINITY
        };
        if err > worst.1 {
            worst = (i, err);
        }
    }
    let (i, err) = worst;
    let (row, class) = (i / classes, i % classes);
    let msg = format!(
        "{what}: worst element row {row} ({}) class {class}: gpu {} cpu {} (scaled error {err:.3e}, tolerance {TOL:.0e})",
        names[row], gpu[i], cpu[i]
    );
    console_log!("{msg}");
    assert!(err <= TOL, "{msg}");
}

/// The embedded default model's forward on WebGPU (SwiftShader here) against the CPU reference,
/// on all 15 sample images, with every block run per row (`first_tuned = 0`) and with every
/// block frozen (`first_tuned = layers`: blocks run once per image, then fanned out).
#[wasm_bindgen_test]
async fn default_model_forward_matches_cpu() {
    use flops_web::gpu::{GpuContext, GpuForward, GpuModel, GpuOptions, Perturbation, QueryRow, RowPlan};
    use flops_web::model::{Image, Model};

    console_error_panic_hook::set_once();
    let model = Model::load(DEFAULT_MODEL, &Default::default()).expect("embedded default model");
    let cfg = model.config().clone();
    let classes = cfg.num_labels();
    let names: Vec<&str> = SAMPLES.iter().map(|(n, _)| *n).collect();
    let mut pixels = Vec::with_capacity(SAMPLES.len() * cfg.image_numel());
    for (name, bytes) in SAMPLES {
        let img = Image::decode(bytes).unwrap_or_else(|e| panic!("decode {name}: {e}"));
        pixels.extend(
            model
                .preprocessor
                .apply(&img)
                .unwrap_or_else(|e| panic!("preprocess {name}: {e}")),
        );
    }
    let cpu = model.net.forward_batch(&pixels).expect("CPU forward");

    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("WebGPU context");
    console_log!(
        "GPU context: {:?}, limits: invocations/workgroup {}, storage binding {} B",
        ctx.summary(),
        ctx.limits.max_compute_invocations_per_workgroup,
        ctx.limits.max_storage_buffer_binding_size
    );
    assert_eq!(ctx.adapter_info.backend, wgpu::Backend::BrowserWebGpu);
    // Validation errors are asynchronous on the web: report uncaptured ones, and scope the whole
    // forward so an invalid dispatch fails the test with the browser's message.
    let uncaptured = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let sink = uncaptured.clone();
        ctx.device
            .on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
                console_log!("uncaptured WebGPU error: {e}");
                sink.lock().unwrap().push(e.to_string());
            }));
    }
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let gpu_model = GpuModel::upload(&ctx, &model.net).expect("upload");
    if let Some(e) = scope.pop().await {
        panic!("WebGPU validation error during the upload: {e}");
    }

    for first_tuned in [0, cfg.num_hidden_layers] {
        let plan = RowPlan {
            rows: (0..SAMPLES.len())
                .map(|i| QueryRow {
                    image: i,
                    label: i % classes,
                    perturbation: Perturbation::Clean,
                })
                .collect(),
            first_tuned,
        };
        let t0 = js_sys::Date::now();
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = GpuForward::run(&ctx, &gpu_model, &pixels, &plan)
            .await
            .expect("GPU forward");
        if let Some(e) = scope.pop().await {
            panic!("WebGPU validation error during the forward (first_tuned {first_tuned}): {e}");
        }
        console_log!(
            "GPU forward of {} rows (first_tuned {first_tuned}): {:.0} ms",
            plan.rows.len(),
            js_sys::Date::now() - t0
        );
        assert_eq!(out.classes, classes);
        let errors = uncaptured.lock().unwrap().clone();
        assert!(errors.is_empty(), "WebGPU errors during the forward: {errors:?}");
        assert_close(
            &format!("logits, first_tuned {first_tuned}"),
            &out.logits,
            &cpu,
            classes,
            &names,
        );
        // The per-row loss is the cross-entropy of the row's logits at its label.
        for (i, row) in plan.rows.iter().enumerate() {
            let want = flops_web::model::nn::cross_entropy(&cpu[i * classes..(i + 1) * classes], row.label);
            let got = out.losses[i];
            assert!(
                (got - want).abs() <= TOL * want.abs().max(1.0),
                "loss of row {i} ({}), first_tuned {first_tuned}: gpu {got} cpu {want}",
                names[i]
            );
        }
    }
}

/// The `Learner` API in the browser, on WebGPU.
mod learner {
    use super::SAMPLES;
    use flops_web::learn::data::AnimalShapeFiles;
    use flops_web::learn::options::TrainOptions;
    use flops_web::model::{Image, Model, ModelFiles};
    use flops_web::web::{create_learner, Learner};
    use js_sys::{Reflect, Uint8Array};
    use wasm_bindgen::JsValue;
    use wasm_bindgen_futures::JsFuture;
    use wasm_bindgen_test::{console_log, wasm_bindgen_test};

    /// The Animal-Shape files (the page fetches them; the test embeds them).
    const ANIMAL_SHAPE: AnimalShapeFiles<'static> = AnimalShapeFiles {
        train_images: include_bytes!("../assets/animal-shape/train-images.idx3-ubyte"),
        train_labels: include_bytes!("../assets/animal-shape/train-labels.idx1-ubyte"),
        test_images: include_bytes!("../assets/animal-shape/test-images.idx3-ubyte"),
        test_labels: include_bytes!("../assets/animal-shape/test-labels.idx1-ubyte"),
        classes_json: include_bytes!("../assets/animal-shape/classes.json"),
    };

    fn get(v: &JsValue, key: &str) -> JsValue {
        Reflect::get(v, &JsValue::from_str(key)).unwrap_or_else(|_| panic!("no `{key}`"))
    }

    async fn wait(p: js_sys::Promise) -> JsValue {
        JsFuture::from(p)
            .await
            .unwrap_or_else(|e| panic!("the call failed: {e:?}"))
    }

    /// A small run on WebGPU over the embedded Animal-Shape split.
    async fn begin(options: TrainOptions) -> Learner {
        let f = super::DEFAULT_MODEL;
        let bytes = |b: Option<&[u8]>| b.map(<[u8]>::to_vec);
        let learner = create_learner(
            bytes(f.config),
            bytes(f.weights),
            bytes(f.preprocessor),
            Some("webgpu".into()),
        )
        .await
        .unwrap_or_else(|e| panic!("createLearner: {:?}", JsValue::from(e)));
        let a = ANIMAL_SHAPE;
        learner
            .load_animal_shape(
                a.train_images,
                a.train_labels,
                a.test_images,
                a.test_labels,
                a.classes_json,
                4,
                2,
            )
            .expect("loadAnimalShape");
        let params = serde_wasm_bindgen::to_value(&options).expect("options");
        let started = wait(learner.begin_training(params)).await;
        assert_eq!(get(&started, "backend").as_string().as_deref(), Some("webgpu"));
        learner
    }

    fn small(steps: usize, eval_every: usize) -> TrainOptions {
        TrainOptions {
            steps,
            batch: 8,
            queries_per_point: 2,
            learning_rate: 0.5,
            eval_every,
            seed: Some(1),
            ..Default::default()
        }
    }

    /// During a run the GPU holds the newest weights; a prediction must use them, not the
    /// host copy (which is as of the run's start). Checked against the exported weights on the
    /// CPU reference (tolerance 1e-4), and against the weights before the run (they must differ,
    /// so the test can fail).
    #[wasm_bindgen_test]
    async fn predictions_during_a_gpu_run_use_the_current_weights() {
        console_error_panic_hook::set_once();
        let learner = begin(small(3, 0)).await;
        let image = SAMPLES[1].1;
        let logits_of = |v: &JsValue| -> Vec<f32> { serde_wasm_bindgen::from_value(get(v, "logits")).expect("logits") };
        let before = logits_of(&wait(learner.predict_encoded(image)).await);
        for _ in 0..3 {
            wait(learner.train_step()).await;
        }
        let during = logits_of(&wait(learner.predict_encoded(image)).await);
        let files = wait(learner.export_model()).await;
        let bytes = |k: &str| Uint8Array::new(&get(&files, k)).to_vec();
        let (config, weights, pre) = (bytes("config"), bytes("weights"), bytes("preprocessor"));
        let model = Model::load(
            ModelFiles {
                config: Some(&config),
                weights: Some(&weights),
                preprocessor: Some(&pre),
            },
            &Default::default(),
        )
        .expect("exported model loads");
        let px = model.preprocessor.apply(&Image::decode(image).unwrap()).unwrap();
        let want = model.net.forward(&px, &mut flops_web::model::NoHook);
        let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        console_log!(
            "max |during - exported| {:.3e}; max |before - exported| {:.3e}",
            diff(&during, &want),
            diff(&before, &want)
        );
        assert_eq!(during.len(), want.len());
        assert!(diff(&before, &want) > 1e-2, "the run did not move the weights");
        assert!(
            diff(&during, &want) <= 1e-4,
            "prediction during the run used other weights"
        );
    }

    /// `evalEvery` is applied by the core alone: `trainStep` says when to validate.
    #[wasm_bindgen_test]
    async fn train_step_says_when_to_evaluate() {
        console_error_panic_hook::set_once();
        let learner = begin(small(5, 2)).await;
        let mut flags = Vec::new();
        for _ in 0..5 {
            let ev = wait(learner.train_step()).await;
            flags.push(get(&ev, "evaluate").as_bool().expect("evaluate flag"));
        }
        // Steps 2 and 4; not the last step (the run's final validation covers it).
        assert_eq!(flags, [false, true, false, true, false]);
    }
}
