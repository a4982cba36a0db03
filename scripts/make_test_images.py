"""Writes the odd-shaped test images of tests/fixtures/images/ (page vs CLI preprocessing, e2e):
non-square, colour, odd sizes, one JPEG, one grayscale, one palette PNG, one 16-bit grayscale
PNG and one CMYK JPEG. Deterministic (no randomness): gradients and shapes drawn with Pillow.

    python scripts/make_test_images.py
"""

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "images"


def pattern(w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 255) // max(w - 1, 1), (y * 255) // max(h - 1, 1), ((x + y) * 7) % 256)
    d = ImageDraw.Draw(img)
    d.ellipse((w // 5, h // 4, w // 2, h - h // 5), fill=(250, 250, 240))
    d.rectangle((w // 2, h // 6, w - w // 8, h // 2), fill=(10, 20, 30))
    return img


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    pattern(61, 23).save(OUT / "wide-colour-61x23.png")
    pattern(37, 83).save(OUT / "tall-colour-37x83.jpg", quality=85)
    pattern(45, 31).convert("L").save(OUT / "gray-45x31.png")
    pattern(29, 53).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(OUT / "palette-29x53.png")
    # 16 bits per sample: the 8-bit gray pattern scaled by 257 (PIL's "I;16").
    gray = pattern(33, 21).convert("L")
    wide = Image.new("I;16", gray.size)
    wide.putdata([v * 257 for v in gray.get_flattened_data()])
    wide.save(OUT / "gray16-33x21.png")
    pattern(27, 35).convert("CMYK").save(OUT / "cmyk-27x35.jpg", quality=90)
    for p in sorted(OUT.iterdir()):
        print(p.name, p.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
