"""Regenerate sample_images/: synthetic handwritten digits in several formats and modes.

Usage: python scripts/make_sample_images.py [OUT_DIR]   (default: sample_images)

Deterministic: the same numpy and Pillow versions give the same files.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from PIL import Image

from digitcli.synth import render_digit

# (file name pattern, size, how it is stored): every digit gets each of these.
STYLES = [
    ("scan_{d}.png", (64, 64), "L"),
    ("photo_{d}.jpg", (240, 320), "RGB"),
    ("note_{d}.gif", (48, 48), "P"),
    ("ink_{d}.webp", (96, 96), "RGB"),
    ("mnist_like_{d}.bmp", (28, 28), "inverted"),
    ("transparent_{d}.png", (80, 80), "RGBA"),
    ("fax_{d}.tiff", (72, 72), "1"),
]


def make(out: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    written = []
    for d in range(10):
        folder = out / str(d)
        folder.mkdir(parents=True)
        for k, (pattern, size, kind) in enumerate(STYLES):
            seed = 1000 + 10 * d + k
            if kind == "RGB" and pattern.startswith("photo"):
                img = render_digit(
                    d,
                    seed=seed,
                    size=size,
                    ink=(30, 40, 120),
                    paper=(235, 225, 200),
                    digit_height=0.5,
                )
            else:
                img = render_digit(d, seed=seed, size=size)
            if kind == "L":
                img = img.convert("L")
            elif kind == "P":
                img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
            elif kind == "inverted":
                img = Image.eval(img.convert("L"), lambda v: 255 - v)
            elif kind == "RGBA":
                alpha = Image.eval(img.convert("L"), lambda v: 255 - v)
                img = Image.new("RGBA", img.size, (0, 0, 0, 0))
                img.putalpha(alpha)
            elif kind == "1":
                img = img.convert("L").point(lambda v: 255 if v > 128 else 0).convert("1")
            path = folder / pattern.format(d=d)
            img.save(path, quality=90) if path.suffix == ".jpg" else img.save(path)
            written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "sample_images")
    files = make(target)
    print(f"wrote {len(files)} images to {target}")
