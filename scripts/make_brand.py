"""Draw the EKM Metering brand images into custom_components/ekm/brand/.

An original mark (not EKM's own logo): a round green-to-blue badge holding a
white meter dial with a lightning bolt, and a word mark "EKM" built from
geometric strokes (no font files needed). Everything is drawn at 4x and
downsampled for anti-aliasing.

Run from the repository root:  .venv/bin/python scripts/make_brand.py
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "custom_components" / "ekm" / "brand"
SS = 4  # supersampling factor

GREEN = (46, 184, 92)
BLUE = (21, 101, 192)
NAVY = (16, 42, 67)
WHITE = (255, 255, 255)
Point = tuple[float, float]


def _gradient(size: int, start: tuple[int, int, int], end: tuple[int, int, int]) -> Image.Image:
    """Square RGBA image with a diagonal gradient from top-left to bottom-right."""
    ramp = Image.linear_gradient("L").resize((size, size))  # top black -> bottom white
    diag = Image.blend(ramp, ramp.rotate(90), 0.5)  # top-left dark -> bottom-right light
    diag = diag.point(lambda v: max(0, min(255, round((v - 20) * 255 / 215))))
    return Image.composite(
        Image.new("RGBA", (size, size), (*end, 255)),
        Image.new("RGBA", (size, size), (*start, 255)),
        diag,
    )


def _bolt(cx: float, cy: float, h: float) -> list[Point]:
    """Lightning-bolt polygon centred on (cx, cy) with height h."""
    shape = [
        (0.62, 0.00),
        (0.06, 0.57),
        (0.44, 0.57),
        (0.30, 1.00),
        (0.94, 0.39),
        (0.55, 0.39),
        (0.80, 0.00),
    ]
    w = h * 0.62
    return [(cx + (x - 0.5) * w, cy + (y - 0.5) * h) for x, y in shape]


def _arc(
    draw: ImageDraw.ImageDraw,
    c: float,
    r: float,
    *,
    span: tuple[float, float],
    width: float,
    fill: tuple[int, ...],
) -> None:
    """Arc with round caps; angles in degrees, clockwise from 3 o'clock."""
    draw.arc((c - r, c - r, c + r, c + r), *span, fill=fill, width=round(width))
    for a in span:
        x = c + (r - width / 2) * math.cos(math.radians(a))
        y = c + (r - width / 2) * math.sin(math.radians(a))
        draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=fill)


def _badge_raw(s: int) -> Image.Image:
    """Draw the icon at s x s pixels, without downsampling."""
    c = s / 2
    disc = Image.new("L", (s, s), 0)
    ImageDraw.Draw(disc).ellipse((0, 0, s - 1, s - 1), fill=255)
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    img.paste(_gradient(s, GREEN, BLUE), (0, 0), disc)

    ink = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(ink)
    r = s * 0.36
    stroke = s * 0.065
    start, end, reading = 135.0, 405.0, 330.0
    _arc(d, c, r, span=(start, end), width=stroke, fill=(*WHITE, 90))  # dial track
    _arc(d, c, r, span=(start, reading), width=stroke, fill=(*WHITE, 255))  # current reading
    # Minor ticks inside the dial.
    for i in range(11):
        a = math.radians(start + (end - start) * i / 10)
        r0, r1 = r - stroke * 1.75, r - stroke * (2.35 if i % 5 == 0 else 2.05)
        tw = s * (0.018 if i % 5 == 0 else 0.012)
        d.line(
            (
                c + r0 * math.cos(a),
                c + r0 * math.sin(a),
                c + r1 * math.cos(a),
                c + r1 * math.sin(a),
            ),
            fill=(*WHITE, 200),
            width=round(tw),
        )
    d.polygon(_bolt(c, c + s * 0.035, s * 0.46), fill=(*WHITE, 255))
    img.alpha_composite(ink)
    return img


def badge(size: int) -> Image.Image:
    """Return the icon: gradient disc, dial arc with a filled reading, ticks and a bolt."""
    return _badge_raw(size * SS).resize((size, size), Image.Resampling.LANCZOS)


def _letter(ch: str, h: float, t: float) -> Image.Image:
    """Mask of one geometric capital (E, K or M) of cap height h and stem width t."""
    wd = {"E": 0.64, "K": 0.78, "M": 0.98}[ch] * h
    m = Image.new("L", (math.ceil(wd), math.ceil(h)), 0)
    d = ImageDraw.Draw(m)
    if ch == "E":
        d.rectangle((0, 0, t, h), fill=255)
        d.rectangle((0, 0, wd, t), fill=255)
        d.rectangle((0, h / 2 - t * 0.46, wd * 0.9, h / 2 + t * 0.46), fill=255)
        d.rectangle((0, h - t, wd, h), fill=255)
    elif ch == "K":
        a = t * 1.3  # horizontal width of the diagonal strokes
        y_low = h * 0.76  # where the arm's lower edge meets the stem
        y_up = y_low * (wd - a - t) / (wd - t)  # keeps the arm's edges parallel
        d.rectangle((0, 0, t, h), fill=255)
        d.polygon([(t - 1, y_up), (wd - a, 0), (wd, 0), (t - 1, y_low)], fill=255)
        # Leg: from inside the arm down to the bottom right, clipped below the arm's top edge.
        slope = y_low / (wd - t)
        qx = t + h * 0.12
        qy = y_low - (qx - t) * slope
        vx, vy = wd - a - qx, h - qy  # leg direction; extend both edges back into the arm
        leg = Image.new("L", m.size, 0)
        ImageDraw.Draw(leg).polygon(
            [(qx - 0.5 * vx, qy - 0.5 * vy), (wd - 1.5 * vx, h - 1.5 * vy), (wd, h), (wd - a, h)],
            fill=255,
        )
        region = Image.new("L", m.size, 0)
        ImageDraw.Draw(region).polygon([(t, y_up), (wd - a, 0), (wd, 0), (wd, h), (t, h)], fill=255)
        m = ImageChops.lighter(m, ImageChops.multiply(leg, region))
    elif ch == "M":
        dx = h * 0.09  # extra width of the diagonals at the top
        vy = h * 0.54  # outer (upper) tip of the V
        tip = h * 0.84  # inner (lower) tip of the V
        e = h * 0.025  # half-width of the flat at the bottom of the V
        slope = vy / (wd / 2 - t - dx)
        ys = tip - slope * (wd / 2 - e - t)  # inner edges parallel to the outer ones
        d.polygon(
            [
                (0, h),
                (0, 0),
                (t + dx, 0),
                (wd / 2, vy),
                (wd - t - dx, 0),
                (wd, 0),
                (wd, h),
                (wd - t, h),
                (wd - t, ys),
                (wd / 2 + e, tip),
                (wd / 2 - e, tip),
                (t, ys),
                (t, h),
            ],
            fill=255,
        )
    return m


def wordmark(h: float, color: tuple[int, int, int]) -> Image.Image:
    """'EKM' in geometric capitals, height h (pixels at supersampled scale)."""
    t = h * 0.2
    gap = h * 0.13
    letters = [_letter(ch, h, t) for ch in "EKM"]
    width = sum(lt.size[0] for lt in letters) + gap * (len(letters) - 1)
    out = Image.new("RGBA", (math.ceil(width), math.ceil(h)), (*color, 0))
    x = 0.0
    for lt in letters:
        layer = Image.new("RGBA", lt.size, (*color, 255))
        out.paste(layer, (round(x), 0), lt)
        x += lt.size[0] + gap
    return out


def logo(height: int, text: tuple[int, int, int]) -> Image.Image:
    """Badge plus word mark, trimmed, scaled to the given height."""
    big = height * SS
    mark = _badge_raw(big)
    word = wordmark(big * 0.50, text)
    gap = round(big * 0.22)
    canvas = Image.new("RGBA", (big + gap + word.size[0], big), (0, 0, 0, 0))
    canvas.alpha_composite(mark, (0, 0))
    canvas.alpha_composite(word, (big + gap, (big - word.size[1]) // 2))
    canvas = canvas.crop(canvas.getbbox())
    w = round(canvas.size[0] * height / canvas.size[1])
    return canvas.resize((w, height), Image.Resampling.LANCZOS)


def main() -> None:
    """Write every brand image."""
    OUT.mkdir(parents=True, exist_ok=True)
    outputs = {
        "icon.png": badge(256),
        "icon@2x.png": badge(512),
        "logo.png": logo(128, NAVY),
        "logo@2x.png": logo(256, NAVY),
        "dark_logo.png": logo(128, WHITE),
        "dark_logo@2x.png": logo(256, WHITE),
    }
    for name, image in outputs.items():
        im = image.crop(image.getbbox())  # trimmed: no transparent margins
        im.save(OUT / name, optimize=True)
        print(f"{name}: {im.size[0]}x{im.size[1]}")


if __name__ == "__main__":
    main()
