"""Forward speed side by side, ratios in one run: our paths (`flops bench speed`: cpu-reference,
cpu-fast, wgsl) and ONNX Runtime's native CPU EP (`ort-native`) and PyTorch (`torch`) on the same
model shapes, batch and thread counts. Prints one JSON object (the `forward` list of
`flops bench speed` plus the ORT/PyTorch entries and the ratios of cpu-fast to ort-native).

    pip install -r scripts/requirements.txt onnxruntime==1.32.0 onnx onnxscript
    cargo build --release --bin flops
    python3 scripts/bench_speed.py [--flops target/release/flops] [--rows 4] [--repeats 5]

Models: `default` is the embedded model (assets/default); `vit-tiny` has ViT-Tiny's shapes
(224 px, patch 16, 12 layers, hidden 192, 3 heads, MLP 768, 10 classes) with random weights
(speed does not depend on them). FLOPs per image are counted as in `flops bench speed`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def flop_per_row(c) -> float:
    t = (c.image_size // c.patch_size) ** 2 + 1
    d, i, l = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    patch = 2.0 * (t - 1) * (c.num_channels * c.patch_size * c.patch_size) * d
    block = 2.0 * t * (4.0 * d * d + 2.0 * d * i) + 4.0 * t * t * d
    return patch + l * block + 2.0 * d * c.num_labels


def torch_seed() -> None:
    import torch

    torch.manual_seed(0)


def models():
    from transformers import ViTConfig, ViTForImageClassification

    s = ViTForImageClassification.from_pretrained(ROOT / "assets" / "default", attn_implementation="eager")
    cfg = ViTConfig(
        hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
        image_size=224, patch_size=16, num_channels=3, num_labels=10, layer_norm_eps=1e-12,
    )
    torch_seed()
    t = ViTForImageClassification(cfg)
    return {"default": s.eval(), "vit-tiny": t.eval()}


def median_time(f, repeats: int) -> float:
    f()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flops", default=str(ROOT / "target" / "release" / "flops"))
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-wgsl", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    cmd = [args.flops, "bench", "speed", "--rows", str(args.rows), "--repeats", str(args.repeats)]
    if args.no_wgsl:
        cmd.append("--no-wgsl")
    ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    forward = ours["forward"]
    threads_all = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models().items():
            c = model.config
            x = torch.rand(args.rows, c.num_channels, c.image_size, c.image_size) * 2 - 1
            flop = flop_per_row(c) * args.rows
            path = Path(tmp) / f"{name}.onnx"
            with torch.no_grad():
                torch.onnx.export(model, (x,), str(path), input_names=["pixel_values"], output_names=["logits"],
                                  dynamic_axes={"pixel_values": {0: "batch"}}, opset_version=17, dynamo=False)
            for threads in sorted({1, threads_all}):
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
                sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                feed = {"pixel_values": x.numpy().astype(np.float32)}
                s = median_time(lambda: sess.run(None, feed), args.repeats)
                forward.append({"path": "ort-native", "model": name, "threads": threads, "rows": args.rows,
                                "ms": s * 1e3, "rows_per_s": args.rows / s, "gflop_per_s": flop / s / 1e9})
                torch.set_num_threads(threads)
                with torch.no_grad():
                    s = median_time(lambda: model(pixel_values=x), args.repeats)
                forward.append({"path": "torch", "model": name, "threads": threads, "rows": args.rows,
                                "ms": s * 1e3, "rows_per_s": args.rows / s, "gflop_per_s": flop / s / 1e9})
    def get(p, m, t=1):
        return next(e["gflop_per_s"] for e in forward if e["path"] == p and e["model"] == m and e["threads"] == t)

    ratios = {m: {"cpu-fast/ort-native (1 thread)": get("cpu-fast", m) / get("ort-native", m),
                  "cpu-reference/ort-native (1 thread)": get("cpu-reference", m) / get("ort-native", m)}
              for m in ("default", "vit-tiny")}
    out = {"adapter": ours.get("adapter"), "cpus": threads_all, "onnxruntime": ort.__version__,
           "torch": torch.__version__, "forward": forward, "ratios": ratios, "steps": ours.get("steps", [])}
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
