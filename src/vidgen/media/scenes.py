"""What the local renderer draws: each frame a pure function of the inputs and its index.

:class:`TextScene` animates a scene derived from a prompt (a palette, a drifting gradient,
moving shapes and the prompt's words appearing one by one, all chosen from a hash of prompt,
style and seed); :class:`KenBurnsScene` pans and zooms over an input image. The same inputs
always give the same frames. :mod:`vidgen.media.render` encodes them.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

MAX_WORDS = 24


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def _smooth(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class _Shape:
    kind: str  # "circle", "ring", "square", "triangle"
    color: tuple[int, int, int]
    radius: float
    cx: float  # centre of the motion, 0..1
    cy: float
    ax: float  # amplitude, 0..1
    ay: float
    fx: float  # cycles per second
    fy: float
    phase: float
    spin: float  # turns per second


@dataclass(frozen=True)
class _Word:
    sprite: Image.Image  # RGBA
    x: int
    y: int
    appear_at: float  # seconds


class TextScene:
    """An animated scene derived from a prompt; ``frame(i)`` is a pure function of ``i``.

    Args:
        prompt: The text; its words are drawn and its hash picks palette and motion.
        width: Frame width.
        height: Frame height.
        fps: Frames per second (frame ``i`` shows time ``i / fps``).
        duration: Length in seconds (words finish appearing at about 60% of it).
        seed: Varies the scene for the same prompt.
        style: Optional style name, mixed into the hash.
    """

    def __init__(
        self,
        prompt: str,
        *,
        width: int,
        height: int,
        fps: float,
        duration: float,
        seed: int = 0,
        style: str | None = None,
    ) -> None:
        self.width = width
        self.height = height
        self.fps = fps
        rng = _rng("scene-v1", seed, style or "", prompt)
        base_hue = rng.random()
        scheme = rng.choice((0.08, 0.33, 0.5, 0.42))
        self.palette = [
            _hsv(base_hue + scheme * i + rng.uniform(-0.03, 0.03), rng.uniform(0.5, 0.9), v)
            for i, v in enumerate((0.25, 0.55, 0.95, 0.9, 0.8, 0.7))
        ]
        self._background = self._make_background(rng)
        self._pan = (rng.uniform(0.05, 0.15), rng.uniform(0.1, 0.25), rng.uniform(0, math.tau))
        unit = min(width, height)
        shapes = []
        for _ in range(rng.randint(5, 8)):
            shapes.append(
                _Shape(
                    kind=rng.choice(("circle", "ring", "square", "triangle")),
                    color=rng.choice(self.palette[1:]),
                    radius=unit * rng.uniform(0.04, 0.14),
                    cx=rng.uniform(0.2, 0.8),
                    cy=rng.uniform(0.2, 0.8),
                    ax=rng.uniform(0.08, 0.3),
                    ay=rng.uniform(0.08, 0.3),
                    fx=rng.uniform(0.05, 0.35) * rng.choice((-1, 1)),
                    fy=rng.uniform(0.05, 0.35) * rng.choice((-1, 1)),
                    phase=rng.uniform(0, math.tau),
                    spin=rng.uniform(-0.3, 0.3),
                )
            )
        self._shapes = tuple(shapes)
        self._words = tuple(self._layout_words(prompt, duration))

    def _make_background(self, rng: random.Random) -> Image.Image:
        # A gradient at a random angle, larger than the frame so it can drift.
        big = (round(self.width * 1.25) + 2, round(self.height * 1.25) + 2)
        mask = Image.linear_gradient("L").rotate(rng.uniform(0, 360), resample=Image.BILINEAR)
        mask = mask.crop((48, 48, 208, 208)).resize(big, Image.BILINEAR)
        dark = Image.new("RGB", big, self.palette[0])
        light = Image.new("RGB", big, self.palette[1])
        return Image.composite(light, dark, mask)

    def _layout_words(self, prompt: str, duration: float) -> Iterator[_Word]:
        words = [w[:32] for w in prompt.split()][:MAX_WORDS]
        if not words:
            return
        size = max(10, round(min(self.width, self.height) / 12))
        font = ImageFont.load_default(size=size)
        stroke = max(1, size // 12)
        # Every sprite is one line high with the text at the same place, so words share a
        # baseline whatever their ascenders and descenders.
        ascent, descent = font.getmetrics()
        height = ascent + descent + 2 * stroke + 2
        sprites = []
        for word in words:
            left, _top, right, _bottom = font.getbbox(word, stroke_width=stroke)
            sprite = Image.new("RGBA", (right - left + 2, height), (0, 0, 0, 0))
            ImageDraw.Draw(sprite).text(
                (1 - left, 1 + stroke),
                word,
                font=font,
                fill=(255, 255, 255, 255),
                stroke_width=stroke,
                stroke_fill=(20, 20, 30, 255),
            )
            sprites.append(sprite)
        # Greedy line wrap inside 84% of the width, then centre the block.
        max_line = self.width * 0.84
        gap = size // 3
        lines: list[list[Image.Image]] = [[]]
        line_width = 0
        for sprite in sprites:
            needed = sprite.width + (gap if lines[-1] else 0)
            if lines[-1] and line_width + needed > max_line:
                lines.append([])
                line_width = 0
                needed = sprite.width
            lines[-1].append(sprite)
            line_width += needed
        line_height = round(size * 1.3)
        top = (self.height - line_height * len(lines)) // 2
        reveal = max(duration * 0.6, 1e-6) / len(sprites)
        index = 0
        for row, line in enumerate(lines):
            total = sum(s.width for s in line) + gap * (len(line) - 1)
            x = round((self.width - total) / 2)
            for sprite in line:
                y = top + row * line_height + (line_height - sprite.height) // 2
                yield _Word(sprite=sprite, x=x, y=y, appear_at=index * reveal)
                x += sprite.width + gap
                index += 1

    def frame(self, index: int) -> Image.Image:
        """The RGB image of frame ``index``."""
        t = index / self.fps
        w, h = self.width, self.height
        bw, bh = self._background.size
        speed, amp, phase = self._pan
        ox = (bw - w) * (0.5 + 0.5 * math.sin(phase + math.tau * speed * t))
        oy = (bh - h) * (0.5 + 0.5 * math.cos(phase + math.tau * speed * t * (1 + amp)))
        image = self._background.crop((round(ox), round(oy), round(ox) + w, round(oy) + h))
        draw = ImageDraw.Draw(image)
        for shape in self._shapes:
            self._draw_shape(draw, shape, t)
        for word in self._words:
            age = t - word.appear_at
            if age < 0:
                continue
            # Each word drops in from above during 0.3 s, then bobs gently.
            drop = (1 - _smooth(age / 0.3)) * -h * 0.05
            bob = math.sin(t * 2.2 + word.x * 0.05) * h * 0.006
            image.paste(word.sprite, (word.x, round(word.y + drop + bob)), word.sprite)
        return image

    def _draw_shape(self, draw: ImageDraw.ImageDraw, shape: _Shape, t: float) -> None:
        x = (shape.cx + shape.ax * math.sin(shape.phase + math.tau * shape.fx * t)) * self.width
        y = (shape.cy + shape.ay * math.cos(shape.phase + math.tau * shape.fy * t)) * self.height
        r = shape.radius * (1 + 0.15 * math.sin(shape.phase * 3 + t * 2.0))
        box = (x - r, y - r, x + r, y + r)
        if shape.kind == "circle":
            draw.ellipse(box, fill=shape.color)
        elif shape.kind == "ring":
            draw.ellipse(box, outline=shape.color, width=max(2, round(r / 5)))
        else:
            sides = 4 if shape.kind == "square" else 3
            angle = math.degrees(shape.phase + math.tau * shape.spin * t)
            draw.regular_polygon((x, y, r), sides, rotation=angle, fill=shape.color)


class KenBurnsScene:
    """A slow pan and zoom over an image, cropped to fill the frame.

    Args:
        image_bytes: The input image (PNG, JPEG or WebP, already checked).
        width: Frame width.
        height: Frame height.
        frames: Number of frames the move spans.
        seed: Picks the zoom direction and the path of the pan.
    """

    MAX_ZOOM = 1.25

    def __init__(
        self, image_bytes: bytes, *, width: int, height: int, frames: int, seed: int = 0
    ) -> None:
        self.width = width
        self.height = height
        self.frames = frames
        with Image.open(io.BytesIO(image_bytes)) as opened:
            source = ImageOps.exif_transpose(opened).convert("RGB")
        # Scale once so the largest frame-shaped box is MAX_ZOOM × the output: every frame is
        # then a cheap downscale of a box of this prepared image.
        scale = max(width / source.width, height / source.height) * self.MAX_ZOOM
        size = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
        self._source = source.resize(size, Image.LANCZOS, reducing_gap=3.0)
        rng = _rng("kenburns-v1", seed, hashlib.sha256(image_bytes).hexdigest())
        zoom_in = rng.random() < 0.5
        low, high = 1.0, rng.uniform(1.12, self.MAX_ZOOM)
        self._zoom = (low, high) if zoom_in else (high, low)
        self._start = (rng.random(), rng.random())
        self._end = (rng.random(), rng.random())

    def frame(self, index: int) -> Image.Image:
        """The RGB image of frame ``index``."""
        progress = _smooth(index / max(1, self.frames - 1))
        zoom = self._zoom[0] + (self._zoom[1] - self._zoom[0]) * progress
        sw, sh = self._source.size
        fit = min(sw / self.width, sh / self.height)  # largest frame-shaped box, zoom 1
        bw, bh = self.width * fit / zoom, self.height * fit / zoom
        fx = self._start[0] + (self._end[0] - self._start[0]) * progress
        fy = self._start[1] + (self._end[1] - self._start[1]) * progress
        x0 = (sw - bw) * fx
        y0 = (sh - bh) * fy
        return self._source.resize(
            (self.width, self.height), Image.BILINEAR, box=(x0, y0, x0 + bw, y0 + bh)
        )
