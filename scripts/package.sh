#!/usr/bin/env bash
# Writes the npm package `flops-web` to pkg/: the ES module API (flops-web.js + .d.ts), the
# worker, and the wasm-bindgen output in pkg/wasm/ (built by scripts/build-web.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
wasm=target/web/wasm
[ -f "$wasm/flops_web_bg.wasm" ] && [ -f "$wasm/flops_web_relaxed_bg.wasm" ] || scripts/build-web.sh
rm -rf pkg && mkdir -p pkg/wasm
cp web/flops-web.js web/flops-web.d.ts web/worker.js web/wasm-simd.js pkg/
# Both builds (the worker loads the relaxed-SIMD one where the browser validates it).
cp "$wasm"/flops_web{,_relaxed}.js "$wasm"/flops_web{,_relaxed}_bg.wasm "$wasm/flops_web.d.ts" pkg/wasm/
# The Animal-Shape split, fetched by the worker from beside it when asked for.
mkdir -p pkg/data/animal-shape
cp assets/animal-shape/{train,test}-{images.idx3,labels.idx1}-ubyte assets/animal-shape/classes.json \
  assets/animal-shape/LICENSE pkg/data/animal-shape/
# The default model, fetched by the worker when the caller gives none.
mkdir -p pkg/models/default
cp assets/default/{config.json,model.safetensors,preprocessor_config.json} pkg/models/default/
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cat > pkg/package.json <<JSON
{
  "name": "flops-web",
  "version": "$version",
  "description": "Fine-tune a Vision Transformer in the browser with forward passes only (FLOPS query allocation, WebGPU).",
  "license": "MIT",
  "type": "module",
  "main": "./flops-web.js",
  "module": "./flops-web.js",
  "types": "./flops-web.d.ts",
  "exports": { ".": { "types": "./flops-web.d.ts", "default": "./flops-web.js" } },
  "files": ["flops-web.js", "flops-web.d.ts", "worker.js", "wasm-simd.js", "wasm/", "data/", "models/", "README.md"],
  "sideEffects": false
}
JSON
cat > pkg/README.md <<'MD'
# flops-web

Fine-tune a Vision Transformer **in the browser, with forward passes only**. Gradients are estimated
from perturbed forward passes, and FLOPS splits each step's query budget across the batch where it
lowers the estimate's variance most. Everything runs in a Web Worker (WebAssembly, WebGPU where
present): images never leave the device.

```js
import { createLearner } from 'flops-web';

const learner = await createLearner({ device: 'auto', onProgress: (e) => console.log(e.status) });
console.log(learner.device.webgpu ? 'WebGPU' : 'CPU only');

const cat = await learner.addClass('cat');
const dog = await learner.addClass('dog');
for (const file of catFiles) await learner.addExample(cat, file);   // File, bytes or ImageData
for (const file of dogFiles) await learner.addExample(dog, file);

const result = await learner.train(
  { allocator: 'flops', steps: 200, batch: 32, queriesPerPoint: 8, learningRate: 0.05 },
  { onStep: (s) => console.log(s.step, s.loss, s.allocation) },
);
console.log('validation accuracy', result.validation.accuracy);

const { top } = await learner.predict(imageData);
const { config, weights, preprocessor } = await learner.exportModel(); // a HF model folder
await learner.dispose();
```

`createLearner({ model: { config, weights, preprocessor } })` loads a HF `ViTForImageClassification`
(or `ViTModel`, or timm) folder instead of the embedded tiny default. The worker is created with
`new Worker(new URL('./worker.js', import.meta.url), { type: 'module' })`, which Vite and webpack 5
bundle as is. Types: `flops-web.d.ts`.
MD
echo "package: pkg/ ($(du -sh pkg | cut -f1))" >&2
