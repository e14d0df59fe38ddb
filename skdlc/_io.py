"""Output that is whole or absent.

- :func:`atomic_write`: one file; a reader sees the old file or the whole new one.
- :func:`output_set`: a set of files (a run's results); they appear together when the
  block succeeds, files of an earlier run that this run does not produce are removed,
  and a failure leaves the earlier results as they were.

Files get the mode an ordinary ``open(path, "w")`` would give them: the mode of the
file they replace, else ``0o666`` less the process umask (``mkstemp`` alone would leave
them ``0o600``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

__all__ = ["atomic_write", "output_set", "check_writable_dir", "umask", "OUTPUT_MARKER", "is_output_set"]

#: Key of every ``summary.json`` that skdlc writes as the completion marker of an
#: output set; readers of image folders leave such folders out (an output written
#: inside the data is never read back as a class).
OUTPUT_MARKER = "skdlc_output"


def umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    old = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(old)
    return old


def _mode_for(path: Path, default: int) -> int:
    """Mode of the file at ``path`` if it exists, else ``default`` less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return default & ~umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows files have no such mode bits
            os.fchmod(fd, _mode_for(path, 0o666))
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable_dir(folder: str | os.PathLike, *, parent: bool = True) -> None:
    """Raise ``OSError`` unless ``folder`` can be created and written (and its parent,
    with ``parent=True``: :func:`output_set` writes beside the folder).

    Leaves nothing behind: folders created for the check are removed again.
    """
    folder = Path(os.path.abspath(folder))
    created = []
    probe = folder
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is not a folder")
        for where in (folder, folder.parent) if parent else (folder,):
            fd, tmp = tempfile.mkstemp(prefix=".skdlc-write-check.", dir=where)
            os.close(fd)
            os.unlink(tmp)
    finally:
        for d in created:  # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def output_set(
    out_dir: str | os.PathLike, names: Iterable[str], *, swap: bool = True
) -> Iterator[Path]:
    """Write a run's output files as one set.

    Yields a temporary folder beside ``out_dir`` (in its parent, so the final moves are
    renames on one file system). Write the outputs there. When the block succeeds they
    replace the earlier results in ``out_dir``: every name in ``names`` (the files and
    folders a run of this kind can produce, e.g. ``"kept.csv"``, ``"figures"``) that
    this run did not produce is removed; other files in ``out_dir`` are left alone.
    When the block raises, ``out_dir`` is not touched and the temporary folder is
    removed.

    With ``swap=True``, ``out_dir`` is replaced in one rename when it holds nothing
    but outputs of an earlier run (a reader then sees the old set or the new one).
    Otherwise (other files there, or ``swap=False`` for a folder that is not the
    run's own, such as the folder of a ``--out FILE``) the new files are renamed in
    one by one, in the order of ``names``; the last name is the completion marker
    (``summary.json``): it is removed first and moved in last.
    """
    out_dir = Path(os.path.abspath(out_dir))
    names = list(names)
    # Beside out_dir when it may be swapped in whole; else inside it (its parent may be
    # anything, e.g. "/" for --out /tmp/kept.jsonl). Renames stay on one file system.
    where = out_dir.parent if swap else out_dir
    where.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=where))
    try:
        os.chmod(tmp, _mode_for(out_dir, 0o777))
        yield tmp
        _commit(tmp, out_dir, names, swap)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _commit(tmp: Path, out_dir: Path, names: list[str], swap: bool) -> None:
    produced = set(os.listdir(tmp))
    if swap and not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    present = set(os.listdir(out_dir)) - {tmp.name}
    if swap and present <= set(names):
        # Only earlier outputs there: swap the folders (rename onto an empty folder
        # replaces it), then drop the old set.
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            os.rename(old, out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    marker = names[-1] if names else None
    order = [n for n in names[:-1] if n in produced] + sorted(produced - set(names))
    order += [marker] if marker in produced else []
    if marker in present and len(order) > 1:
        _remove(out_dir / marker)  # the old set is no longer whole: say so first
    for name in [n for n in names if n in present and n not in produced]:
        _remove(out_dir / name)  # stale output of an earlier run
    for name in order:
        src, dst = tmp / name, out_dir / name
        if src.is_dir() and dst.exists():
            _remove(dst)
        os.replace(src, dst)


def is_output_set(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a complete skdlc output set (a ``summary.json`` marked
    with :data:`OUTPUT_MARKER`, or one written by an earlier skdlc: ``outputs`` and
    ``n_kept`` beside a ``kept.csv``)."""
    import json

    folder = Path(folder)
    summary = folder / "summary.json"
    try:
        if not summary.is_file() or summary.stat().st_size > 50_000_000:
            return False
        with open(summary, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(d, dict):
        return False
    return bool(d.get(OUTPUT_MARKER)) or ({"outputs", "n_kept"} <= set(d) and (folder / "kept.csv").is_file())
