"""cache_check: a command, not a stage. Checks the DVC cache against its own content addresses.

    python -m stages.cache_check            # check every object; set the damaged ones aside
    python -m stages.cache_check --dry-run  # only report them

DVC 3 has no ``fsck``, and never re-hashes a cache object once it is stored (read-only objects
are trusted as they are): a damaged object is handed out by ``dvc checkout`` and ``dvc pull``
as good, again after every rebuild, since DVC sees the object there and does not write it again.
This command reads every object under the cache's ``files/md5/`` folder and compares it with its
name: DVC 3 names an object by the md5 of its raw bytes (a folder's listing, ``<md5>.dir``, by the
md5 of that JSON file's bytes; DVC 2's ``md5-dos2unix``, which hashed text with Unix line endings,
is not used by DVC 3 outputs, and its legacy objects are left alone). Checked on dvc 3.67 /
dvc-data 3.18 (``dvc_data.hashfile.hash``, ``Tree.digest``).

A damaged object is moved, never deleted, to ``<cache>/damaged/``: DVC then sees it as missing,
so ``dvc status`` reports the outputs that use it as "not in cache", ``dvc repro`` reruns the
stages that made them and ``dvc pull`` fetches a good copy from a remote. Each one is reported
with the workspace files that use it (from ``dvc.lock``). Exit status: 0 when every object
matches its name, 1 when damaged objects were found (and set aside, unless ``--dry-run``).

The stages check their own artifacts too (``stages/checksums.py``); this finds damage in what no
stage has loaded yet, and takes it out of the cache, where a retrain alone cannot replace it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path

OBJECT = re.compile(r"^[0-9a-f]{30}(\.dir)?$")  # the name's last 30 hex digits; the first 2 are its folder
DAMAGED = "damaged"


def md5_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def objects(folder: Path) -> list[tuple[str, Path]]:
    """(oid, path) of every object in a DVC 3 ``files/md5`` folder: ``ab/cdef...`` is ``abcdef...``."""
    found = []
    for prefix in sorted(folder.iterdir()) if folder.is_dir() else []:
        if prefix.is_dir() and re.fullmatch(r"[0-9a-f]{2}", prefix.name):
            found.extend((prefix.name + path.name, path) for path in sorted(prefix.iterdir())
                         if OBJECT.match(path.name) and path.is_file())
    return found


def find_damaged(folder: Path) -> list[tuple[str, Path, str]]:
    """(oid, path, what is wrong) of every object whose bytes do not hash to its name."""
    from tqdm.auto import tqdm

    found = [(oid, path, path.stat().st_size) for oid, path in objects(folder)]
    damaged = []
    with tqdm(total=sum(size for *_, size in found), unit="B", unit_scale=True,
              desc="checking the DVC cache") as bar:
        for oid, path, size in found:
            bar.update(size)
            try:
                actual = md5_file(path)
            except FileNotFoundError:  # removed meanwhile (dvc gc): nothing to check
                continue
            except OSError as exc:  # an unreadable sector is damage too
                damaged.append((oid, path, f"unreadable ({os.strerror(exc.errno) if exc.errno else exc})"))
                continue
            if actual != oid.removesuffix(".dir"):
                damaged.append((oid, path, f"its bytes hash to {actual}"))
    return damaged


def set_aside(path: Path, oid: str, cache_root: Path) -> Path:
    """Move a damaged object to ``<cache>/damaged/<oid>`` (a number added if that is taken)."""
    target = cache_root / DAMAGED / oid
    target.parent.mkdir(exist_ok=True)
    n = 1
    while target.exists():
        target, n = cache_root / DAMAGED / f"{oid}.{n}", n + 1
    os.replace(path, target)
    return target


def users(repo) -> dict[str, list[str]]:
    """oid -> the workspace files (and their stages) that dvc.lock says hold it."""
    found: dict[str, list[str]] = {}
    for out in repo.index.outs:
        if not out.use_cache or not out.hash_info or not out.hash_info.value:
            continue
        where = f"{out.def_path} (stage {out.stage.addressing})"
        found.setdefault(out.hash_info.value, []).append(where)
        if out.hash_info.isdir:
            tree = out.get_obj()  # None when the listing itself is missing or unreadable
            for key, _, info in tree or []:
                if info and info.value:
                    found.setdefault(info.value, []).append(
                        f"{out.def_path}/{'/'.join(key)} (stage {out.stage.addressing})")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="report damaged objects, move nothing")
    args = parser.parse_args(argv)

    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(os.getcwd())
    except NotDvcRepoError:
        sys.exit(f"error: {os.getcwd()} is not in a DVC repository")
    with repo:
        folder, cache_root = Path(repo.cache.local.path), Path(repo.cache.local_cache_dir)
        damaged = find_damaged(folder)
        used_by = users(repo) if damaged else {}
    root = Path(repo.root_dir)
    for oid, path, problem in damaged:
        shown = os.path.relpath(path, root)
        where = ", ".join(used_by.get(oid, [])) or "no output of this workspace's dvc.lock"
        if args.dry_run:
            print(f"damaged: {shown}: {problem}; used by {where}")
        else:
            aside = os.path.relpath(set_aside(path, oid, cache_root), root)
            print(f"damaged: {shown}: {problem}; used by {where}; moved to {aside}")
    total = len(objects(folder)) + (0 if args.dry_run else len(damaged))
    if not damaged:
        print(f"{os.path.relpath(folder, root)}: all {total} objects match their names")
        return
    if args.dry_run:
        sys.exit(f"{len(damaged)} of {total} objects damaged; rerun without --dry-run to set them aside")
    sys.exit(summary(len(damaged), total, sum(1 for oid, *_ in damaged if used_by.get(oid))))


def summary(damaged: int, total: int, used: int) -> str:
    """The closing line after damaged objects were set aside: ``dvc repro`` rebuilds only what an
    output of this workspace uses; an object no output uses (another revision's, or junk) needs
    nothing, and is never rebuilt by it."""
    line = f"{damaged} of {total} objects damaged and set aside"
    unused = damaged - used
    if not used:
        return f"{line}; no output of this workspace's dvc.lock uses them: nothing here needs rebuilding"
    rest = f"; {unused} of them used by no output here, nothing to rebuild for those" if unused else ""
    return (f"{line}: `dvc repro` rebuilds the {used} that outputs here use (`dvc pull` fetches them "
            f"from a remote that has them){rest}")


if __name__ == "__main__":
    main()
