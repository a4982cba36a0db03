#!/usr/bin/env python3
"""PyTorch-autograd gradient fixture of the embedded default model: external truth for gradient estimators.

Produces tests/fixtures/default_grad.safetensors (see tests/fixtures/README.md for every tensor):
  pixel_values [8,1,28,28], labels [8], logits [8,10], losses [8]   first 8 Animal-Shape TRAIN images
  grad.<HF name>                       d/dθ of the MEAN cross-entropy (1/8) Σ_i l_i for the classifier head,
                                       the last encoder block (layer 3) and the final LayerNorm
  grad_per_sample.classifier.{weight [8,10,64], bias [8,10]}   d l_i / dθ for each sample i (NOT divided by 8)

Everything stored is computed in float64 (model.double(), and HF's eager attention patched so that its
softmax runs in float64 too instead of its hard-wired float32) and cast to float32; the same gradients are
computed in float32 with the stock model and compared (printed). Float32/64, model.eval(), eager attention,
torch.set_num_threads(2), deterministic algorithms; no randomness is involved.

Rerun (from the repo root, after scripts/make_default_model.py and scripts/make_animal_shape.py):
  pip install -r scripts/requirements.txt
  python3 scripts/make_grad_fixture.py
"""
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open
from transformers import ViTForImageClassification, ViTImageProcessorPil
from transformers.models.vit import modeling_vit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "assets" / "default"
OUT = REPO / "tests" / "fixtures" / "default_grad.safetensors"
B = 8
LAST = 3  # index of the last encoder block (config: num_hidden_layers = 4)

# HF checkpoint name (as in model.safetensors) -> module path in transformers 5.24's ViT implementation.
# Verified below by comparing each loaded parameter with the checkpoint tensor of that name.
_BLOCK = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
    "layernorm_before": "layernorm_before",
    "layernorm_after": "layernorm_after",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}
GROUPS = {
    "head": [f"classifier.{wb}" for wb in ("weight", "bias")],
    "last_block": [f"vit.encoder.layer.{LAST}.{k}.{wb}" for k in _BLOCK for wb in ("weight", "bias")],
    "final_norm": [f"vit.layernorm.{wb}" for wb in ("weight", "bias")],
}


def module_name(hf: str) -> str:
    prefix = f"vit.encoder.layer.{LAST}."
    if hf.startswith(prefix):
        stem, wb = hf[len(prefix):].rsplit(".", 1)
        return f"vit.layers.{LAST}.{_BLOCK[stem]}.{wb}"
    return hf


def load_batch():
    a = REPO / "assets" / "animal-shape"
    images = flops_data.read_idx(a / "train-images.idx3-ubyte")[:B].copy()
    labels = flops_data.read_idx(a / "train-labels.idx1-ubyte")[:B].astype(np.int64)
    assert images.shape == (B, 28, 28) and images.dtype == np.uint8, (images.shape, images.dtype)
    assert labels.min() >= 0 and labels.max() < 10, labels
    proc = ViTImageProcessorPil.from_pretrained(MODEL_DIR)
    pv = proc(images=[im[:, :, None] for im in images], input_data_format="channels_last",
              return_tensors="pt")["pixel_values"].float()
    manual = ((torch.from_numpy(images).float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    d = (pv - manual).abs().max().item()
    print(f"[batch] labels {labels.tolist()}; processor vs (x/255-0.1307)/0.3081 max|diff| = {d:.3g}")
    assert pv.shape == (B, 1, 28, 28) and d < 1e-6, (pv.shape, d)
    return pv, torch.from_numpy(labels)


def eager_attention_full_precision(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                                   **kwargs):
    """transformers 5.24 `modeling_vit.eager_attention_forward` with ONE change: the softmax runs in the
    input dtype instead of `dtype=torch.float32` (which would silently make the float64 run use a float32
    softmax). For float32 inputs it is the same computation."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = torch.nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)
    return attn_output.transpose(1, 2).contiguous(), attn_weights


@contextlib.contextmanager
def full_precision_attention():
    orig = modeling_vit.eager_attention_forward
    modeling_vit.eager_attention_forward = eager_attention_full_precision
    try:
        yield
    finally:
        modeling_vit.eager_attention_forward = orig


def load_model(dtype):
    model = ViTForImageClassification.from_pretrained(MODEL_DIR, attn_implementation="eager",
                                                      dtype=torch.float32).eval()
    if dtype == torch.float64:
        model = model.double()
    return model


def grads(model, pv, labels, names):
    """Mean-CE gradients (HF names -> tensor), per-sample head gradients, logits, per-sample losses."""
    params = dict(model.named_parameters())
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    logits = model(pixel_values=pv.to(next(model.parameters()).dtype)).logits
    losses = F.cross_entropy(logits, labels, reduction="none")
    losses.mean().backward()
    g = {n: params[module_name(n)].grad.detach().clone() for n in names}

    # Per-sample head gradients by autograd (one backward per sample, through the shared graph).
    w, b = params["classifier.weight"], params["classifier.bias"]
    gw, gb = [], []
    with torch.enable_grad():
        logits2 = model(pixel_values=pv.to(w.dtype)).logits
        losses2 = F.cross_entropy(logits2, labels, reduction="none")
        for i in range(B):
            dw, db = torch.autograd.grad(losses2[i], (w, b), retain_graph=True)
            gw.append(dw)
            gb.append(db)
    ps = {"classifier.weight": torch.stack(gw), "classifier.bias": torch.stack(gb)}
    return g, ps, logits.detach(), losses.detach()


def rel(a, b):
    """(max|a-b| / max|b|, ||a-b|| / ||b||), both computed in float64."""
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max()).item(), ((a - b).norm() / b.norm()).item()


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    pv, labels = load_batch()
    names = [n for grp in GROUPS.values() for n in grp]

    # The name map must pick exactly the checkpoint tensors.
    m32 = load_model(torch.float32)
    params = dict(m32.named_parameters())
    with safe_open(str(MODEL_DIR / "model.safetensors"), "pt") as f:
        for n in names:
            assert torch.equal(params[module_name(n)].detach(), f.get_tensor(n)), n

    g32, ps32, logits32, losses32 = grads(m32, pv, labels, names)
    m64 = load_model(torch.float64)
    with full_precision_attention():
        g64, ps64, logits64, losses64 = grads(m64, pv, labels, names)
        # The patch must take effect (the f64 logits must differ from an f32-softmax f64 run) ...
        with torch.no_grad():
            patched = m64(pixel_values=pv.double()).logits
    with torch.no_grad():
        stock = m64(pixel_values=pv.double()).logits
        stock32 = m32(pixel_values=pv).logits
    with full_precision_attention(), torch.no_grad():
        patched32 = m32(pixel_values=pv).logits
    print(f"[attn] f64 logits, f64 softmax vs HF's f32 softmax: max|d| {(patched - stock).abs().max():.2e}; "
          f"f32 model, patched vs stock: max|d| {(patched32 - stock32).abs().max():.2e}")
    assert torch.equal(patched, logits64) and torch.equal(patched32, stock32)
    assert (patched - stock).abs().max() > 0

    # Checks: f32 vs f64, per-sample mean == batch gradient, analytic head gradient.
    # d/d(key bias) is exactly 0: adding b to every key shifts each query's scores by the constant q.b,
    # which the softmax cancels. Its stored value is float64 round-off, so it is left out of the worst case.
    key_bias = f"vit.encoder.layer.{LAST}.attention.attention.key.bias"
    worst = (0.0, "")
    for n in names:
        r_max, r_norm = rel(g32[n], g64[n])
        if n != key_bias:
            worst = max(worst, (r_max, n))
        print(f"[f32 vs f64] {n:55s} max|d|/max|g| {r_max:.2e}  ||d||/||g|| {r_norm:.2e}")
    print(f"[f32 vs f64] worst max|d|/max|g| = {worst[0]:.3e} ({worst[1]}; excluding {key_bias})")
    print(f"[key bias] max|grad| f64 {g64[key_bias].abs().max():.2e}, f32 {g32[key_bias].abs().max():.2e} "
          f"(exact value 0)")
    assert g64[key_bias].abs().max() < 1e-12 and worst[0] < 1e-4
    for n in ps64:
        print(f"[f32 vs f64] grad_per_sample.{n}: max|d|/max|g| {rel(ps32[n], ps64[n])[0]:.2e}")
    print(f"[f32 vs f64] logits max|d| {(logits32.double() - logits64).abs().max():.2e}, "
          f"losses max|d| {(losses32.double() - losses64).abs().max():.2e}")
    for n in ps64:
        d = (ps64[n].mean(0) - g64[n]).abs().max().item()
        print(f"[check] mean_i grad_per_sample.{n} vs grad.{n}: max|d| {d:.2e}")
        assert d < 1e-12, d
    with full_precision_attention(), torch.no_grad():
        h = m64.vit(pixel_values=pv.double()).last_hidden_state[:, 0]  # [B,64] CLS after final norm
        e = torch.softmax(logits64, -1) - F.one_hot(labels, 10).double()
        d = max((ps64["classifier.weight"] - e[:, :, None] * h[:, None, :]).abs().max().item(),
                (ps64["classifier.bias"] - e).abs().max().item())
    print(f"[check] per-sample head grad vs (softmax - onehot) (x) h_cls: max|d| {d:.2e}")
    assert d < 1e-12, d

    t = {"pixel_values": pv, "labels": labels, "logits": logits64.float(), "losses": losses64.float()}
    for n in names:
        t[f"grad.{n}"] = g64[n].float()
    for n in ps64:
        t[f"grad_per_sample.{n}"] = ps64[n].float()
    for n, v in t.items():
        assert v.dtype in (torch.float32, torch.int64) and torch.isfinite(v.double()).all(), n

    meta = {"format_version": "1", "generator": "scripts/make_grad_fixture.py", "torch": torch.__version__,
            "transformers": transformers.__version__,
            "description": "assets/default ViT, batch = first 8 Animal-Shape TRAIN images (labels = animal "
                           "labels 0..9 as class indices). grad.<HF name> = gradient of the MEAN per-sample "
                           "cross-entropy (1/8) sum_i l_i for classifier, vit.encoder.layer.3.*, "
                           "vit.layernorm.*; grad_per_sample.classifier.* = d l_i/d theta per sample (not "
                           "divided by 8). All values computed in float64 (eval, eager attention with the "
                           "softmax also in float64) and cast to float32. grad of "
                           "vit.encoder.layer.3.attention.attention.key.bias is exactly 0 in exact "
                           "arithmetic (stored: float64 round-off)."}
    flops_data.write_safetensors(t, OUT, meta)

    print(f"[mean loss] {losses64.mean().item():.6f}; losses {[round(x, 4) for x in losses64.tolist()]}")
    print(f"[preds] {logits64.argmax(-1).tolist()} vs labels {labels.tolist()}")
    for grp, ns in GROUPS.items():
        norm = torch.sqrt(sum((g64[n] ** 2).sum() for n in ns)).item()
        print(f"[norm] {grp:10s} ||grad|| = {norm:.6g}  ({', '.join(f'{n}: {g64[n].norm().item():.4g}' for n in ns)})")
    print(f"[file] {OUT.relative_to(REPO)}: {OUT.stat().st_size} bytes, {len(t)} tensors")
    print("\n".join(f"  {n} {str(t[n].dtype).replace('torch.', '')} {list(t[n].shape)}" for n in sorted(t)))


if __name__ == "__main__":
    main()
