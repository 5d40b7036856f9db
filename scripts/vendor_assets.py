"""Rebuild the vendored browser assets (GraphiQL and what it needs) from npm, checking sha256.

The files under ``src/vidgen/web/static/vendor/`` are built from npm packages pinned in
``vendor.json`` beside them: for each package its exact version, the sha256 of its tarball
and of every file taken from it (and of what is written, when a file is transformed). They
are committed, so running vidgen needs no Node and no network; this script only rebuilds
or upgrades them, and needs ``npm`` (it fetches with ``npm pack``, from npm's configured
registry).

    python scripts/vendor_assets.py                       # rebuild from the pins, verify all
    python scripts/vendor_assets.py --check               # offline: the files match the pins
    python scripts/vendor_assets.py --upgrade graphiql@4.1.2 react@18.3.1
                                                          # new versions: re-pin and rebuild

A rebuild fails (and writes nothing) when a tarball or a file differs from its pinned
sha256. ``--upgrade`` records the new hashes: review the diff of ``vendor.json``.

The one transform: ``data:`` URLs inside a stylesheet (GraphiQL's fonts and a few images)
are written out as files next to it and the stylesheet points at them, so the pages'
Content-Security-Policy can allow fonts and images from the server's own origin only.
The output is a pure function of the input bytes, so a reviewer gets the same bytes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VENDOR = Path(__file__).resolve().parent.parent / "src" / "vidgen" / "web" / "static" / "vendor"
MANIFEST = VENDOR / "vendor.json"

# url(data:<mime>;base64,<data>) with or without quotes, as minifiers write them.
_DATA_URL = re.compile(r"""url\((["']?)data:([a-z0-9.+/-]+);base64,([A-Za-z0-9+/=]+)\1\)""")
_EXTENSIONS = {
    "font/woff2": "woff2",
    "font/woff": "woff",
    "application/font-woff": "woff",
    "image/png": "png",
    "image/gif": "gif",
    "image/svg+xml": "svg",
}


class Mismatch(Exception):
    """A tarball or file is not the pinned one."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_dir(package: dict[str, Any]) -> str:
    """The folder a package's files go to: ``@scope/name`` 1.2.3 -> ``scope-name-1.2.3``."""
    return f"{package['name'].lstrip('@').replace('/', '-')}-{package['version']}"


def npm_pack(spec: str, into: Path) -> bytes:
    """The tarball of ``name@version`` as npm fetches it (npm checks the registry's
    integrity hash on the way)."""
    done = subprocess.run(
        ["npm", "pack", spec, "--json", "--silent", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
    )
    filename = json.loads(done.stdout)[0]["filename"]
    return (into / filename).read_bytes()


def extract_data_urls(css: bytes) -> tuple[bytes, dict[str, bytes]]:
    """The stylesheet with each base64 ``data:`` URL replaced by a file under ``assets/``
    (named by its content's sha256), and those files."""
    files: dict[str, bytes] = {}

    def replace(match: re.Match[str]) -> str:
        mime, data = match.group(2), base64.b64decode(match.group(3))
        name = f"assets/{sha256(data)[:16]}.{_EXTENSIONS[mime]}"
        files[name] = data
        return f"url({name})"

    text = _DATA_URL.sub(replace, css.decode("utf-8"))
    return text.encode("utf-8"), files


def build(package: dict[str, Any], tarball: bytes, *, repin: bool) -> dict[str, bytes]:
    """The files to write for one package (paths relative to the vendor folder). With
    ``repin``, the hashes in ``package`` are replaced by the new ones; otherwise every one
    must match."""
    spec = f"{package['name']}@{package['version']}"

    def check(what: str, pinned: str | None, actual: str) -> str:
        if not repin and pinned != actual:
            raise Mismatch(f"{spec}: {what} has sha256 {actual}, pinned {pinned}")
        return actual

    package["tarball_sha256"] = check("the tarball", package.get("tarball_sha256"), sha256(tarball))
    out: dict[str, bytes] = {}
    base = package_dir(package)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for entry in package["files"]:
            member = tar.extractfile(f"package/{entry['from']}")
            if member is None:
                raise Mismatch(f"{spec}: no file {entry['from']} in the tarball")
            data = member.read()
            entry["sha256"] = check(entry["from"], entry.get("sha256"), sha256(data))
            if entry.get("extract_data_urls"):
                data, assets = extract_data_urls(data)
                folder = Path(entry["to"]).parent
                for name, content in assets.items():
                    out[f"{base}/{(folder / name).as_posix()}"] = content
            if entry.get("extract_data_urls") or "written_sha256" in entry:
                entry["written_sha256"] = check(
                    f"{entry['to']} as written", entry.get("written_sha256"), sha256(data)
                )
            out[f"{base}/{entry['to']}"] = data
    return out


def rebuild(manifest: dict[str, Any], upgrades: dict[str, str]) -> None:
    for name in upgrades:
        if name not in {p["name"] for p in manifest["packages"]}:
            raise SystemExit(f"{name} is not a vendored package")
    written: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for package in manifest["packages"]:
            repin = package["name"] in upgrades
            if repin:
                package["version"] = upgrades[package["name"]]
            tarball = npm_pack(f"{package['name']}@{package['version']}", Path(tmp))
            written.update(build(package, tarball, repin=repin))
    # Everything checked: replace the folder's contents (the manifest is rewritten last).
    for child in VENDOR.iterdir():
        if child != MANIFEST:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    for relative, data in sorted(written.items()):
        path = VENDOR / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(written)} files under {VENDOR}")


def check_on_disk(manifest: dict[str, Any]) -> list[str]:
    """Problems with the committed files (no network): each pinned file must be there with
    its pinned (or written) sha256, and nothing else may be."""
    problems: list[str] = []
    expected: set[Path] = {MANIFEST}
    for package in manifest["packages"]:
        base = VENDOR / package_dir(package)
        for entry in package["files"]:
            path = base / entry["to"]
            expected.add(path)
            want = entry.get("written_sha256", entry["sha256"])
            if not path.is_file():
                problems.append(f"missing {path}")
            elif sha256(path.read_bytes()) != want:
                problems.append(f"{path} differs from its pinned sha256")
            elif entry.get("extract_data_urls"):
                for name in re.findall(r"url\((assets/[0-9a-f]{16}\.\w+)\)", path.read_text()):
                    asset = path.parent / name
                    expected.add(asset)
                    if not asset.is_file() or sha256(asset.read_bytes())[:16] != asset.stem:
                        problems.append(f"{asset} is missing or not what its name says")
    for path in VENDOR.rglob("*"):
        if path.is_file() and path not in expected:
            problems.append(f"{path} is not in vendor.json")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="verify the files on disk only")
    group.add_argument("--upgrade", nargs="+", metavar="NAME@VERSION", help="re-pin these packages")
    args = parser.parse_args(argv)
    manifest = json.loads(MANIFEST.read_text())
    if args.check:
        problems = check_on_disk(manifest)
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print("vendored assets match vendor.json")
        return 1 if problems else 0
    upgrades = {}
    for spec in args.upgrade or ():
        name, _, version = spec.rpartition("@")
        if not name or not version:
            raise SystemExit(f"expected NAME@VERSION, got {spec!r}")
        upgrades[name] = version
    try:
        rebuild(manifest, upgrades)
    except Mismatch as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
