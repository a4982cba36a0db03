"""Backprop yardsticks for forward-only fine-tuning: writes docs/backprop_refs.json.

The same model (assets/default), data and split (assets/animal-shape: 2,000 train / 1,000
validation) as `flops finetune`; the head is new, N(0, 0.02^2) with zero bias, as the product
makes it. Rows:
- head (converged): multinomial logistic regression on the frozen final-LayerNorm [CLS]
  features by full-batch L-BFGS (the ceiling of any head-only method);
- head + last 1, head + last 2 blocks (and the final LayerNorm): AdamW 1e-3, weight decay 0.05,
  1,000 steps of 64, 20 warm-up steps then cosine;
- all parameters: AdamW 5e-4, 300 steps of 128 (as scripts/make_animal_shape.py's probe).
Each trained row runs for every seed in --seeds (mean and spread reported). Also the peak memory
(tracemalloc is blind to torch; we report torch's autograd-saved activations in bytes per image
for each tuning, the memory a backprop step needs beyond a forward-only one).

    python3 scripts/backprop_refs.py [--seeds 0 1 2] [--out docs/backprop_refs.json]

~4 min for 3 seeds on 2 idle cores (torch.set_num_threads(2)).
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops_data  # noqa: E402


def load_split():
    d = ROOT / "assets" / "animal-shape"
    tx = flops_data.read_idx(d / "train-images.idx3-ubyte")
    ty = flops_data.read_idx(d / "train-labels.idx1-ubyte")
    vx = flops_data.read_idx(d / "test-images.idx3-ubyte")
    vy = flops_data.read_idx(d / "test-labels.idx1-ubyte")
    return tx, ty, vx, vy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(ROOT / "docs" / "backprop_refs.json"))
    ap.add_argument("--skip-all", action="store_true", help="skip the all-parameter row (the slowest)")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from transformers import ViTForImageClassification

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    model_dir = ROOT / "assets" / "default"
    pre = json.loads((model_dir / "preprocessor_config.json").read_text())
    mean, std = pre["image_mean"][0], pre["image_std"][0]
    tx, ty, vx, vy = load_split()

    def norm(u8):
        return ((torch.from_numpy(u8.copy()).float() / 255.0 - mean) / std).unsqueeze(1)

    xtr, ytr = norm(tx), torch.from_numpy(ty.astype(np.int64))
    xva, yva = norm(vx), torch.from_numpy(vy.astype(np.int64))

    def fresh(seed):
        torch.manual_seed(seed)
        m = ViTForImageClassification.from_pretrained(model_dir, attn_implementation="eager")
        with torch.no_grad():
            m.classifier.weight.normal_(0.0, 0.02)
            m.classifier.bias.zero_()
        return m

    @torch.no_grad()
    def accuracy(m):
        m.eval()
        return float((m(pixel_values=xva).logits.argmax(-1) == yva).float().mean())

    def tuned_params(m, tuning):
        # transformers 5 names the blocks vit.layers (4.x: vit.encoder.layer).
        blocks = m.vit.layers if hasattr(m.vit, "layers") else m.vit.encoder.layer
        layers = len(blocks)
        if tuning == "all":
            return list(m.parameters())
        k = int(tuning.split(":")[1])
        ps = list(m.classifier.parameters()) + list(m.vit.layernorm.parameters())
        for blk in blocks[layers - k:]:
            ps += list(blk.parameters())
        return ps

    def saved_bytes(m, tuning, batch=64):
        """Bytes autograd keeps for the backward of one step of `batch` images (activations saved
        for backward, from saved-tensor hooks), per image."""
        for p in m.parameters():
            p.requires_grad_(False)
        for p in tuned_params(m, tuning):
            p.requires_grad_(True)
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = F.cross_entropy(m(pixel_values=xtr[:batch]).logits, ytr[:batch])
        loss.backward()
        return total[0] / batch

    def train(seed, tuning, steps, batch, lr, warmup=20):
        m = fresh(seed)
        for p in m.parameters():
            p.requires_grad_(False)
        params = tuned_params(m, tuning)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
        g = torch.Generator().manual_seed(seed)
        t0 = time.time()
        for step in range(steps):
            idx = torch.randint(0, len(xtr), (batch,), generator=g)
            cur = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
            for grp in opt.param_groups:
                grp["lr"] = cur
            m.train()
            loss = F.cross_entropy(m(pixel_values=xtr[idx]).logits, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return accuracy(m), time.time() - t0, sum(p.numel() for p in params)

    rows = []
    # Head, converged: L-BFGS on frozen features (deterministic; the seed only sets the init).
    base = fresh(0)
    base.eval()
    with torch.no_grad():
        ftr = base.vit(pixel_values=xtr).last_hidden_state[:, 0]
        fva = base.vit(pixel_values=xva).last_hidden_state[:, 0]
    head = torch.nn.Linear(ftr.shape[1], 10)
    head.load_state_dict(base.classifier.state_dict())
    l2 = 1e-4
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=2000, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(ftr), ytr) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    t0 = time.time()
    opt.step(closure)
    with torch.no_grad():
        head_acc = float((head(fva).argmax(-1) == yva).float().mean())
    rows.append({"tuning": "head", "method": f"L-BFGS on frozen features, L2 {l2}", "accuracies": [head_acc],
                 "mean": head_acc, "seconds": round(time.time() - t0, 1), "parameters": 650,
                 "saved_bytes_per_image": None})
    print(json.dumps(rows[-1]), flush=True)

    plans = [("last:1", 1000, 64, 1e-3), ("last:2", 1000, 64, 1e-3)]
    if not args.skip_all:
        plans.append(("all", 300, 128, 5e-4))
    for tuning, steps, batch, lr in plans:
        accs, secs = [], []
        for seed in args.seeds:
            a, s, n = train(seed, tuning, steps, batch, lr)
            accs.append(a)
            secs.append(s)
        row = {"tuning": tuning, "method": f"AdamW {lr}, wd 0.05, {steps} x {batch}, cosine",
               "seeds": args.seeds, "accuracies": accs, "mean": float(np.mean(accs)),
               "sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
               "seconds": round(float(np.mean(secs)), 1), "parameters": n,
               "saved_bytes_per_image": saved_bytes(fresh(0), tuning)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    out = {"data": "assets/animal-shape (2,000 train / 1,000 validation)", "model": "assets/default",
           "torch": torch.__version__, "command": "python3 scripts/backprop_refs.py " + " ".join(sys.argv[1:]),
           "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
