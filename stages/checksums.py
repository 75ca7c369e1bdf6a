"""Artifacts that check themselves: a ``SHA256SUMS`` file inside every folder a stage hands on.

The adapter (``{paths.models}/lora``), the full fine-tune (``{paths.models}/full``) and the
tokenized data (``{paths.tokenized}``) are written with a manifest beside their files, as the
last step before the folder is moved into place, and every stage that loads one checks it first.

Why not trust DVC for this: DVC hashes an output once, when it is saved, and never again. Its
cache objects are read-only and DVC does not re-hash a read-only object before handing it out,
and its state database pairs a file's inode, size and mtime with the hash it had. So a cache
object damaged on disk is restored by ``dvc checkout`` as good, ``dvc status`` calls it up to
date, and every stage downstream computes from garbage with exit 0. The manifest travels with
the files (``dvc push``/``pull``, ``dvc artifacts get``) and is checked where they are used.
``python -m stages.cache_check`` finds the damaged cache object itself.

The format is GNU coreutils' (``<sha256>  <relative path>``, sorted), so ``sha256sum -c
SHA256SUMS`` inside the folder checks it without this project. Every file is listed except
``README.md``: the adapter's model card is text no loader reads, rewritten by whoever publishes
the artifact. A check refuses a listed file that is missing or differs, an unlisted file (a
loader might read it), and a folder without a manifest: the pipeline writes one into every such
output, so a folder without one was made by an older version of this project or damaged, and
``dvc repro`` rebuilds it. Hashing costs about a second per 500 MB.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from stages.errors import InputError

log = logging.getLogger(__name__)
MANIFEST = "SHA256SUMS"
UNCHECKED = frozenset({MANIFEST, "README.md"})  # the manifest itself; the model card (see above)


def remedy(folder: Path) -> str:
    """What mends a folder that fails its check, in the order to try. Most often only the
    workspace copy is damaged, and the DVC cache holds good bytes: a fresh checkout restores them
    (``dvc checkout --force`` alone may not: DVC trusts a file whose size and mtime it knows).
    Refused again, the cache object is damaged too: cache_check sets it aside, repro rebuilds it."""
    return (f"delete {folder} and run `dvc checkout {folder}` to restore it from the DVC cache; refused "
            "again, the cache copy is damaged too: `python -m stages.cache_check` sets it aside, then "
            "`dvc repro` rebuilds it")


class ChecksumError(InputError):
    """A stage's artifact does not match its manifest: damaged on disk or in the DVC cache."""


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() not in UNCHECKED)


def write(folder: str | Path) -> None:
    """Write ``folder/SHA256SUMS`` for every file in ``folder`` (but the model card)."""
    folder = Path(folder)
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in _files(folder)]
    (folder / MANIFEST).write_text("".join(lines), encoding="utf-8")


def _read(folder: Path) -> dict[str, str]:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ChecksumError(f"{folder}: no {MANIFEST} to check its files against (made by an older "
                            "version of this project, or damaged); `dvc repro` rebuilds it")
    listed: dict[str, str] = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ChecksumError(f"{manifest}: line {number} is not '<sha256>  <file>' (damaged); {remedy(folder)}")
        listed[name] = digest
    return listed


def verify(folder: str | Path) -> None:
    """Raise ``ChecksumError`` (one line: the file, what is wrong, the remedy) unless every file
    of ``folder`` is listed in its manifest with the bytes it has now."""
    folder = Path(folder)
    listed = _read(folder)
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise ChecksumError(f"{path}: listed in {folder / MANIFEST} but missing; {remedy(folder)}")
        if sha256_file(path) != digest:
            raise ChecksumError(f"{path}: its sha256 differs from the one in {folder / MANIFEST}, so "
                                f"the file is damaged; {remedy(folder)}")
    unlisted = [name for name in _files(folder) if name not in listed]
    if unlisted:
        raise ChecksumError(f"{folder / unlisted[0]}: not listed in {folder / MANIFEST} (added after "
                            f"the stage wrote the folder); {remedy(folder)}")
    log.info("%s: %d files match %s", folder, len(listed), MANIFEST)
