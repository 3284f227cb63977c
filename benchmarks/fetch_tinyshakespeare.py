"""Fetch tiny-shakespeare (Karpathy's char-rnn corpus, about 1.1 MB of plain text) and check it.

    python benchmarks/fetch_tinyshakespeare.py                 # writes data/tinyshakespeare.txt
    python benchmarks/fetch_tinyshakespeare.py PATH [--url URL]

The file is downloaded from the char-rnn repository, its SHA-256 compared with the known
one, and only then moved into place (a temporary file beside it, then a rename), so PATH
is either the right text or untouched. An existing PATH with the right content is kept.
Equivalent by hand:

    curl -L -o data/tinyshakespeare.txt https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
    sha256sum data/tinyshakespeare.txt   # 86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SIZE = 1115394


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(dest: Path, url: str = URL) -> str:
    """Write the checked corpus to `dest`; returns what was done. Raises SystemExit with a message on failure."""
    if dest.is_file() and sha256(dest.read_bytes()) == SHA256:
        return f"{dest} already holds tiny-shakespeare"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except (OSError, ValueError) as error:
        raise SystemExit(f"fetch_tinyshakespeare: cannot download {url}: {error}") from None
    if sha256(data) != SHA256:
        raise SystemExit(
            f"fetch_tinyshakespeare: {url} gave {len(data)} bytes with SHA-256 {sha256(data)}, not tiny-shakespeare "
            f"({SIZE} bytes, {SHA256}); nothing written"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"wrote {dest} ({len(data):,} bytes, SHA-256 checked)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch tiny-shakespeare and check its SHA-256.")
    parser.add_argument("dest", nargs="?", default="data/tinyshakespeare.txt", help="where to write it (default: %(default)s)")
    parser.add_argument("--url", default=URL, help="where to fetch it from (default: the char-rnn repository)")
    args = parser.parse_args(argv)
    print(fetch(Path(args.dest), args.url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
