"""Where a model version's files go while it is trained, and cleaning up after a killed train.

A train saves into `.<version>.partial` beside the versions, with an owner file naming the store,
host and process that writes it. The directory is renamed to `<version>` inside the store
transaction that registers the version (the last step before its commit), so a version directory
without a registry row exists only if the process dies in that last step. `sweep_orphans` removes
what a dead train left: a directory of *this* store (its owner file says so), not registered, whose
owning process is gone (same host), or, from another host, older than a day. Directories without
an owner file (versions from before this, or placed by hand) are never touched, nor are those of
another store sharing the models folder, nor a train still running in another process.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

OWNER_FILE = "sleuth-owner.json"
PARTIAL_SUFFIX = ".partial"
FOREIGN_HOST_STALE_S = 24 * 3600   # a partial from another host: its process cannot be asked


def partial_dir(model_dir: Path, version: str, db_path: Path) -> Path:
    """A fresh temporary directory for `version`'s files, with its owner file written."""
    path = model_dir / f".{version}{PARTIAL_SUFFIX}"
    path.mkdir(parents=True, exist_ok=False)
    owner = {"db": str(Path(db_path).resolve()), "host": socket.gethostname(), "pid": os.getpid(),
             "version": version}
    (path / OWNER_FILE).write_text(json.dumps(owner))
    return path


def _owner(path: Path) -> dict | None:
    try:
        owner = json.loads((path / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def _owner_gone(owner: dict, path: Path) -> bool:
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        return owner["pid"] != os.getpid() and not _process_alive(owner["pid"])
    return time.time() - path.stat().st_mtime > FOREIGN_HOST_STALE_S


def sweep_orphans(model_dir: Path, db_path: Path, registered: set[str]) -> list[Path]:
    """Remove this store's directories that a killed train left behind; returns what was removed."""
    if not model_dir.is_dir():
        return []
    db = str(Path(db_path).resolve())
    removed = []
    for path in sorted(model_dir.iterdir()):
        name = path.name
        version = name[1:-len(PARTIAL_SUFFIX)] if name.startswith(".") and name.endswith(PARTIAL_SUFFIX) else name
        if not path.is_dir() or version in registered:
            continue
        owner = _owner(path)
        if owner is None or owner.get("db") != db or owner.get("version") != version:
            continue
        if _owner_gone(owner, path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
