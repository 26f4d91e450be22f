"""Files carbontrack writes and reads on its own behalf: who may read them, and the config file.

A leaf module (standard library, ``platformdirs`` and ``carbontrack.errors`` only) so that
settings, paths, writers, the intensity cache and the command line share one policy.

**Permissions.** Run logs, CSV files, ``--json`` reports and caches hold command lines, host
names and working directories, so they are private to the user by default: files ``0600``,
directories carbontrack creates ``0700``. ``file_mode="shared"`` (option, ``$CARBONTRACK_FILE_MODE``
or ``file_mode`` in the config file) opens them to the user's group, for a team writing to one
log directory: files ``0660``, directories ``2770`` (set-group-id, so files created inside take
the directory's group). Every file of a log directory follows the same mode: a file carbontrack
appends to that the user owns is given the mode if it has another (run logs used to be
``0644``, CSVs ``0600``); files of other users are left alone. Directories that already exist
are never changed (a ``log_dir`` of ``.`` must not lock a project directory). The intensity
cache is always private (it is per user).

**Config file.** Read only when it is a regular file of at most ``MAX_CONFIG_BYTES`` (a FIFO
would block, ``/dev/zero`` would fill memory), opened without blocking and checked again on the
open descriptor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path
from typing import IO, Any

from carbontrack.errors import InvalidOption

__all__ = [
    "CONFIG_ENV",
    "FILE_MODES",
    "MAX_CONFIG_BYTES",
    "apply_mode",
    "carbontrack_home",
    "config_path",
    "make_dirs",
    "modes",
    "open_append",
    "read_config",
    "write_bytes",
]

logger = logging.getLogger(__name__)

HOME_ENV = "CARBONTRACK_HOME"
CONFIG_ENV = "CARBONTRACK_CONFIG"
FILE_MODE_ENV = "CARBONTRACK_FILE_MODE"

#: ``file_mode`` values: (file permissions, directory permissions).
FILE_MODES: dict[str, tuple[int, int]] = {
    "private": (0o600, 0o700),
    "shared": (0o660, 0o2770),
}
DEFAULT_FILE_MODE = "private"

#: Files are opened without following a symbolic link in their last component: in a shared
#: log directory another member could otherwise point ``carbontrack-runs.csv`` at a file of
#: yours and have carbontrack append to it.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

#: The largest config file read: a real one is a few hundred bytes.
MAX_CONFIG_BYTES = 1024 * 1024


def carbontrack_home() -> Path:
    """``$CARBONTRACK_HOME`` if set, else the platform's user data directory for carbontrack."""
    env = os.environ.get(HOME_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_data_path("carbontrack", appauthor=False)


def modes(file_mode: str) -> tuple[int, int]:
    """``(file mode, directory mode)`` of a ``file_mode`` name."""
    return FILE_MODES.get(file_mode, FILE_MODES[DEFAULT_FILE_MODE])


def make_dirs(path: Path, file_mode: str = DEFAULT_FILE_MODE) -> None:
    """Create ``path`` and missing parents with the directory mode; existing ones are kept."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    dir_mode = modes(file_mode)[1]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=0o700)
            # mkdir's mode passes through the umask; chmod sets it exactly (set-gid included).
            with contextlib.suppress(OSError):
                os.chmod(folder, dir_mode)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")


def apply_mode(fd: int, file_mode: str) -> None:
    """Give the open file ``fd`` the mode of ``file_mode`` if this user owns it."""
    wanted = modes(file_mode)[0]
    with contextlib.suppress(OSError):
        info = os.fstat(fd)
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != wanted:
            os.fchmod(fd, wanted)


def open_append(path: Path, file_mode: str = DEFAULT_FILE_MODE) -> IO[str]:
    """Open ``path`` to append text (created with the mode; its directory too)."""
    make_dirs(path.parent, file_mode)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, modes(file_mode)[0])
    try:
        apply_mode(fd, file_mode)
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def write_bytes(path: Path, data: bytes, file_mode: str = DEFAULT_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically (a temporary file renamed), with the mode."""
    make_dirs(path.parent, file_mode)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by a crashed process with this pid; O_EXCL below needs it gone
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, modes(file_mode)[0])
    try:
        apply_mode(fd, file_mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- config file -------------------------------------------------------------------------------


def config_path() -> Path:
    """``$CARBONTRACK_CONFIG``, else ``config.toml`` in carbontrack's home directory."""
    env = os.environ.get(CONFIG_ENV, "").strip()
    return Path(env).expanduser() if env else carbontrack_home() / "config.toml"


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _refuse(path: Path, why: str) -> InvalidOption:
    origin = f" (${CONFIG_ENV})" if os.environ.get(CONFIG_ENV, "").strip() else ""
    return InvalidOption(
        f"config file {path}{origin} is not valid: {why}; expected a TOML file of at most "
        f"{MAX_CONFIG_BYTES // 1024} KiB. Point {CONFIG_ENV} at one, or unset it"
    )


def read_config_text(path: Path) -> str | None:
    """The text of the config file at ``path`` (``None`` when there is none).

    Raises ``InvalidOption`` when it is not a regular file or is too large; an unreadable file
    (permissions) raises ``PermissionError`` for the caller to warn about.
    """
    try:
        info = path.stat()  # stat never blocks, unlike opening a FIFO
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(path, f"it is {_kind(info.st_mode)}")
    if info.st_size > MAX_CONFIG_BYTES:
        raise _refuse(path, f"it has {info.st_size:,} bytes")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        again = os.fstat(fd)  # the file may have been swapped since the stat above
        if not stat.S_ISREG(again.st_mode):
            raise _refuse(path, f"it is {_kind(again.st_mode)}")
        data = b""
        while len(data) <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise _refuse(path, f"it has more than {MAX_CONFIG_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(path, f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_config() -> dict[str, Any]:
    """The config file's content (``{}`` when there is none or it cannot be read).

    Raises ``InvalidOption`` naming the file when it is not a regular file, is too large or is
    not valid TOML.
    """
    path = config_path()
    try:
        text = read_config_text(path)
    except InvalidOption:
        raise
    except OSError as exc:
        # An unreadable file (permissions) is not a mistake in it: go on without it, say so.
        logger.warning("carbontrack: config file %s cannot be read (%s); ignored", path, exc)
        return {}
    if text is None:
        return {}
    import tomllib  # only when there is a config file to parse

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidOption(
            f"config file {path} is not valid TOML ({exc}); fix it or remove it"
        ) from None
    except RecursionError:
        raise InvalidOption(f"config file {path} is nested too deeply; fix it") from None
