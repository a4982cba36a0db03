// make bench's page (driven by tests/bench/bench.mjs): our forward (the wasm's `benchForward`:
// cpu-fast on the CPU, wgsl on WebGPU) and ONNX Runtime Web's (WASM EP on 1 thread, WebGPU EP)
// on the same model, batch and pixels, or a cold start of either. The result lands in
// `window.benchResult` ({ error } on failure).
//   ?mode=forward&model=default&rows=4&repeats=5&inner=1&warmupMs=3000&paths=cpu-fast,wgsl&ort=wasm,webgpu
//     [&build=relaxed-simd|simd128: our wasm build; default: the one the worker picks]
//   ?mode=cold-ours&device=auto|cpu      page load -> learner made -> first prediction
//   ?mode=cold-ort&model=default         page load -> ORT session made -> first run
// ONNX Runtime Web is imported only by the modes that use it (a cold start of ours loads none of
// it), each EP from its own bundle: the WASM EP from ort.wasm (the plain simd build,
// ort-wasm-simd-threaded.wasm), the WebGPU EP from ort.webgpu (which runs on the asyncify build).
const ORT_BUNDLES = { wasm: '/ort/ort.wasm.min.mjs', webgpu: '/ort/ort.webgpu.min.mjs' };
let ort;
async function loadOrt(ep) {
  ort = await import(ORT_BUNDLES[ep] ?? ORT_BUNDLES.webgpu);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = '/ort/';
  return ort;
}

const q = new URLSearchParams(location.search);
const model = q.get('model') || 'default';
const rows = Number(q.get('rows') || 4);
const repeats = Number(q.get('repeats') || 5);
// Each sample times this many forwards in a row (the page is not cross-origin isolated, so
// performance.now() is coarsened to 0.1 ms: too coarse for the default model's 2-4 ms).
const inner = Number(q.get('inner') || 1);
// Both sides warm up for at least this long (and one run): V8 runs wasm from its baseline
// compiler first and tiers up to optimised code later, which made ORT's first runs 2x slower.
const warmupMs = Number(q.get('warmupMs') || 3000);
const list = (k, d) => (q.get(k) ?? d).split(',').filter(Boolean);

const bytes = async (path) => {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
};

// The pattern of the wasm's `bench_pixels` (src/web/bench.rs): both sides feed the same values.
// Math.fround twice: Rust divides and subtracts in f32, rounding after each.
const pixels = (n) => Float32Array.from({ length: n }, (_, i) => Math.fround(Math.fround(((i * 7919) % 2001) / 1000) - 1));

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

function maxAbsDiff(a, b) {
  if (!a || !b || a.length !== b.length) return null;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function ortForward(onnx, ep, shape, x) {
  const session = await ort.InferenceSession.create(onnx, { executionProviders: [ep], graphOptimizationLevel: 'all' });
  const feeds = { pixel_values: new ort.Tensor('float32', x, shape) };
  const start = performance.now();
  let out = await session.run(feeds);
  while (performance.now() - start < warmupMs) out = await session.run(feeds);
  const samples = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    for (let j = 0; j < inner; j++) out = await session.run(feeds);
    samples.push((performance.now() - t0) / inner);
  }
  const logits = Array.from(out.logits.data);
  await session.release();
  return { samples, logits };
}

async function forward() {
  const dir = `/bench-models/${model}/`;
  const [config, weights, onnx] = await Promise.all(['config.json', 'model.safetensors', 'model.onnx'].map((f) => bytes(dir + f)));
  const cfg = JSON.parse(new TextDecoder().decode(config));
  const shape = [rows, cfg.num_channels ?? 3, cfg.image_size, cfg.image_size];
  const x = pixels(shape.reduce((a, b) => a * b, 1));
  // The build the page's worker would load (web/worker.js), unless ?build= names one.
  const build = q.get('build') || (await import('/wasm-simd.js')).wasmBuild;
  const { default: init, benchForward } = await (build === 'relaxed-simd' ? import('/wasm/flops_web_relaxed.js') : import('/wasm/flops_web.js'));
  await init();
  const ours = await benchForward(config, weights, rows, repeats, inner, warmupMs, list('paths', 'cpu-fast,wgsl'));
  const theirs = [];
  for (const ep of list('ort', 'wasm,webgpu')) {
    await loadOrt(ep);
    const r = await ortForward(onnx, ep, shape, x);
    theirs.push({ path: ep === 'wasm' ? 'ort-web-wasm' : 'ort-web-webgpu', rows, ms: median(r.samples), samplesMs: r.samples, logits: r.logits });
  }
  const reference = theirs[0]?.logits;
  const entries = [...ours, ...theirs].map((e) => ({ ...e, logitsMaxAbsDiffVsOrt: maxAbsDiff(e.logits, reference), logits: undefined }));
  return { model, rows, repeats, inner, warmupMs, wasmSimd: build, ortVersion: ort?.env.versions?.common ?? null, entries };
}

// page load -> first prediction through the npm API (the default model, fetched by the worker).
async function coldOurs() {
  const { createLearner } = await import('/flops-web.js');
  const learner = await createLearner({ device: q.get('device') || 'auto' });
  const ready = performance.now();
  const n = 64;
  const data = new Uint8ClampedArray(n * n * 4).map((_, i) => (i * 37) % 256);
  const p = await learner.predict({ width: n, height: n, data });
  const first = performance.now();
  const info = learner.device;
  await learner.dispose();
  return { side: 'flops-web', device: info.trainingBackend, learnerMs: ready, firstPredictionMs: first, top: p.top?.[0]?.label ?? null };
}

// page load -> first run of ONNX Runtime Web on the same default model (its WASM EP, 1 thread).
async function coldOrt() {
  const ep = q.get('ep') || 'wasm';
  await loadOrt(ep);
  const onnx = await bytes(`/bench-models/${model}/model.onnx`);
  const session = await ort.InferenceSession.create(onnx, { executionProviders: [ep], graphOptimizationLevel: 'all' });
  const ready = performance.now();
  const cfg = JSON.parse(new TextDecoder().decode(await bytes(`/bench-models/${model}/config.json`)));
  const shape = [1, cfg.num_channels ?? 3, cfg.image_size, cfg.image_size];
  await session.run({ pixel_values: new ort.Tensor('float32', pixels(shape.reduce((a, b) => a * b, 1)), shape) });
  return { side: `ort-web-${ep}`, sessionMs: ready, firstPredictionMs: performance.now() };
}

const modes = { forward, 'cold-ours': coldOurs, 'cold-ort': coldOrt };
(modes[q.get('mode') || 'forward'] ?? (() => Promise.reject(new Error(`unknown mode ${q.get('mode')}`))))()
  .then((r) => { window.benchResult = r; }, (e) => { window.benchResult = { error: String(e?.stack || e) }; });
