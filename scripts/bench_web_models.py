"""The models of `make bench` (tests/bench/bench.mjs): for each of `default` (the embedded model)
and `vit-tiny` (ViT-Tiny's shapes, random weights; see scripts/bench_speed.py), one folder with
the HF files our learner loads (config.json, model.safetensors) and the same network exported to
ONNX (model.onnx, opset 17, batch dimension dynamic) for ONNX Runtime Web: both sides run the
same weights, so the benchmark also compares their logits.

    pip install -r scripts/requirements.txt onnx onnxscript
    python3 scripts/bench_web_models.py target/bench/models

Skips a model whose folder already holds all three files.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import models  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench/models")
    import torch

    for name, model in models().items():
        d = out / name
        if all((d / f).is_file() for f in ("config.json", "model.safetensors", "model.onnx")):
            continue
        d.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        c = model.config
        x = torch.rand(1, c.num_channels, c.image_size, c.image_size) * 2 - 1
        with torch.no_grad():
            torch.onnx.export(model, (x,), str(d / "model.onnx"), input_names=["pixel_values"],
                              output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}},
                              opset_version=17, dynamo=False)
        print(f"bench_web_models: wrote {d}", file=sys.stderr)


if __name__ == "__main__":
    main()
