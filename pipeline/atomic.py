"""Atomic outputs: everything is written under a temporary name, then renamed into place.

A crash therefore never leaves a half-written directory or file that a later stage would trust.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temp directory beside `final`; on success it replaces `final` as a whole."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Path | None = None
    try:
        if final.exists():  # moved aside onto an empty directory of a unique name, removed once replaced
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            final.rename(old)
        tmp.rename(final)
    except BaseException:  # e.g. Ctrl-C between the two renames: put the previous output back, drop the new one
        if old is not None and not final.exists():
            old.rename(final)
        for path in (tmp, old):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def one_maker(entry: Path, field: str, making: str, timeout_s: float) -> Iterator[None]:
    """Hold the lock on making `entry` (a cached model folder; `making`: what, for messages) for the block.

    Sweep workers starting together all need the same entry on first use; the second waits here, then finds it made,
    instead of making it again and renaming its copy over the one the first is reading. The lock is flock(2) on
    `.NAME.lock` beside the entry (dropped when the holder dies, SIGKILL included); once it is held, what a killed
    earlier maker left (`.NAME.tmp-*`, `.NAME.old-*`) is cleared. The wait is bounded and says whom it waits for.
    """
    lock = entry.parent / f".{entry.name}.lock"
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access: a shared cache works
    except OSError as exc:
        raise PipelineError(f"{field}: cannot create the lock file {lock} ({exc.strerror or exc})") from exc
    try:
        deadline, told = time.monotonic() + timeout_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # /proc/locks is read only to say who holds it: once, and on giving up
                if time.monotonic() >= deadline:
                    raise PipelineError(
                        f"{field}: another process ({lock_holder(lock)}) was still {making} after {timeout_s:.0f} s; "
                        "expected it to finish (stop it if it is stuck, then run again)"
                    ) from None
                if not told:
                    holder = lock_holder(lock)
                    log.info(
                        "%s: waiting for another process (%s) %s, up to %.0f s ...", field, holder, making, timeout_s
                    )
                    told = True
                time.sleep(0.2)
            except OSError as exc:
                raise PipelineError(
                    f"{field}: cannot lock {lock} ({exc.strerror or exc}); expected a directory on a local filesystem"
                ) from exc
        for leftover in sorted(entry.parent.iterdir()):
            found = LEFTOVER.match(leftover.name)
            if found and found["name"] == entry.name:
                log.info("%s: %s", field, _clear(leftover, entry.parent))
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_holder(path: Path) -> str:
    """The process holding a flock on `path`, from /proc/locks (Linux), as `pid N: its command line`."""
    st = os.stat(path)
    file_id = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"  # as /proc/locks writes it
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "its process is not known on this system"
    for fields in (line.split() for line in lines):
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == file_id:
            pid = fields[4]
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                command = "?"
            return f"pid {pid}: {command.strip()[:160]}"
    return "its process could not be found"


LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-.+$")


def remove_leftovers(root: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    """Clear what a process killed mid-write (SIGKILL, power loss) left under `root`: a displaced previous
    output (`.NAME.old-*`) whose replacement never arrived goes back to NAME; other temp and displaced entries
    are removed. The caller must hold `root` alone; directories in `skip` (a cache shared with other processes)
    and nested run directories (holding a `.hydra/`) are not its to clear. Returns one line per entry."""
    done: list[str] = []
    skipped = {p.resolve() for p in skip}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if (here / d).resolve() not in skipped and not (here / d / ".hydra").is_dir()]
        for name in sorted(n for n in dirs + files if LEFTOVER.match(n)):
            done.append(_clear(here / name, root))
        dirs[:] = [d for d in dirs if not LEFTOVER.match(d)]
    return done


def _clear(path: Path, root: Path) -> str:
    """Restore or remove one leftover (see remove_leftovers); says which, relative to `root`."""
    found = LEFTOVER.match(path.name)
    final = path.with_name(found["name"])
    if found["kind"] == "old" and not os.path.lexists(final):
        path.rename(final)
        return f"{path.relative_to(root)} restored as {final.name}"
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return f"{path.relative_to(root)} removed"


def writable_dir(path: Path, field: str) -> Path:
    """`path` resolved and created, or a PipelineError naming `field` when it cannot be created or written."""
    path = path.expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"{field}: cannot create {path} ({exc.strerror or exc})") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise PipelineError(f"{field}: {path} is not writable; choose a directory you can write to")
    return path


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
