from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from vidgen.media import signing

KEY = "u1/v2/video.mp4"
NOW = 1_700_000_000


def test_signed_url_shape_and_verify() -> None:
    url = signing.signed_url("https://api.example.com/", KEY, ttl=60, secret="s", now=NOW)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"https://api.example.com/media/{KEY}"
    query = parse_qs(parts.query)
    assert query["exp"] == [str(NOW + 60)]
    assert signing.verify(KEY, query["exp"][0], query["sig"][0], "s", now=NOW)
    assert signing.verify(KEY, NOW + 60, query["sig"][0], "s", now=NOW + 59)


def test_sign_is_deterministic_and_key_bound() -> None:
    assert signing.sign(KEY, NOW, "s") == signing.sign(KEY, NOW, "s")
    assert signing.sign(KEY, NOW, "s") != signing.sign("u1/v3/video.mp4", NOW, "s")
    assert signing.sign(KEY, NOW, "s") != signing.sign(KEY, NOW + 1, "s")
    assert signing.sign(KEY, NOW, "s") != signing.sign(KEY, NOW, "t")


def test_tampering_is_refused() -> None:
    exp = NOW + 60
    sig = signing.sign(KEY, exp, "s")
    assert not signing.verify("u2/v2/video.mp4", exp, sig, "s", now=NOW)  # other key
    assert not signing.verify(KEY, exp + 3600, sig, "s", now=NOW)  # longer expiry
    assert not signing.verify(KEY, exp, sig[:-1] + ("A" if sig[-1] != "A" else "B"), "s", NOW)
    assert not signing.verify(KEY, exp, sig, "other-secret", now=NOW)
    assert not signing.verify(KEY, f"0{exp}", sig, "s", now=NOW)  # same number, other text
    assert not signing.verify(KEY, "soon", sig, "s", now=NOW)
    assert not signing.verify(KEY, None, sig, "s", now=NOW)
    assert not signing.verify(KEY, exp, None, "s", now=NOW)
    assert not signing.verify(KEY, exp, "", "s", now=NOW)
    assert not signing.verify(KEY, exp, "é", "s", now=NOW)


def test_expired_is_refused() -> None:
    exp = NOW + 60
    sig = signing.sign(KEY, exp, "s")
    assert not signing.verify(KEY, exp, sig, "s", now=exp)
    assert not signing.verify(KEY, exp, sig, "s", now=exp + 1000)


def test_default_now_is_current_time() -> None:
    url = signing.signed_url("http://h", KEY, ttl=120, secret="s")
    query = parse_qs(urlsplit(url).query)
    assert signing.verify(KEY, query["exp"][0], query["sig"][0], "s")
