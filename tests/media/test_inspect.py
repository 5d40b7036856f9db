"""One pass over a provider's output (inspect.read) gives what probe() and make_thumbnail() give."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vidgen.media import inspect
from vidgen.media.probe import ProbeError, probe
from vidgen.media.thumbnails import make_thumbnail
from vidgen.providers.testing import tiny_video


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
@pytest.mark.parametrize("width", [32, 320])
def test_inspect_matches_probe_and_thumbnail(tmp_path: Path, fmt: str, width: int) -> None:
    video = tmp_path / f"v.{fmt}"
    video.write_bytes(tiny_video(fmt))
    ours, theirs = tmp_path / "ours.jpg", tmp_path / "theirs.jpg"
    info, data = inspect.read(video, width=width, fmt="jpeg")
    ours.write_bytes(data)
    assert info == probe(video)
    size = make_thumbnail(video, theirs, width=width, fmt="jpeg")
    with Image.open(ours) as a, Image.open(theirs) as b:
        assert a.format == b.format == "JPEG"
        assert a.size == b.size == size


def test_inspect_rejects_what_is_not_a_video(tmp_path: Path) -> None:
    bogus = tmp_path / "v.mp4"
    bogus.write_bytes(b"not a video at all")
    with pytest.raises(ProbeError):
        inspect.read(bogus, width=64, fmt="jpeg")
    with pytest.raises(ValueError):
        inspect.read(bogus, width=64, fmt="gif")
