"""One file to send: a host's recordings packed with a manifest, and read back safely.

The file is a gzip-compressed tar archive (``lab-contribution-<host-id>.tar.gz``)
holding ``contribution.json`` (the manifest: format, host id, the SHA-256 of
every file) and ``<host-id>/`` with the package's ``datapackage.json`` and CSV
files. It is byte-for-byte the same for the same recordings: no owner, user
name, time stamp or file name of the packing machine is stored in it (tar
headers carry uid 0, no user or group name and the time of the newest
recording; the gzip header no name and no time). Its own SHA-256 is printed
and written beside it (``<file>.sha256``, the format ``sha256sum -c`` reads).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lab import __version__, datapackage
from lab.bench import record_root
from lab.contrib import private
from lab.contrib.checks import Checked, ContributionError, check_folder, recorded_resources

FORMAT = "lab-contribution/1"
MANIFEST = "contribution.json"
SUFFIX = ".tar.gz"
#: No recording of this book comes near these; a larger file is not a contribution.
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_FILES = 64
_MEMBER = re.compile(r"[a-z]+-[0-9a-f]{8}/[A-Za-z0-9_.-]+")


@dataclass
class Packed:
    """A packed contribution: where it is, its checksum, and what is in it."""

    path: Path
    sha256: str
    size: int
    checked: Checked
    left_out: list[str] = field(default_factory=list)


def file_name(host_id: str) -> str:
    return f"lab-contribution-{host_id}{SUFFIX}"


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(folder: str | os.PathLike[str], output: str | os.PathLike[str] | None = None) -> Packed:
    """Pack the host folder ``folder`` (``data/measured/<host-id>``) into one file; return what was packed.

    Only what ``python -m lab record`` writes goes in (other resources and files are named in
    ``left_out``), with the folder given to ``--root`` in each recorded command written as a
    placeholder. The result passes every check but the duplicate one (which needs the book's
    ``data/measured``), and the private check also looks for this machine's host and user names:
    a :class:`ContributionError` says which, and no file is written.
    """
    import pandas as pd

    folder = Path(folder)
    host_id = folder.name
    try:
        descriptor = datapackage.read_descriptor(folder)
    except datapackage.DataError as exc:
        raise ContributionError("resources", f"{folder} holds no recordings: {exc}") from None
    known = recorded_resources()
    kept = [r for r in descriptor["resources"] if r.get("name") in known]
    listed = {datapackage.DESCRIPTOR, *(r.get("path") for r in kept)}
    left_out = [f"{r.get('path')} (not written by 'python -m lab record')"
                for r in descriptor["resources"] if r.get("name") not in known]
    left_out += [f"{p.name} (not part of the data package)" for p in sorted(folder.iterdir())
                 if p.name not in listed and p.name not in {r.get("path") for r in descriptor["resources"]}]
    frames = {r["name"]: pd.read_csv(folder / r["path"], dtype=str, keep_default_na=False, na_filter=False)
              for r in kept if (folder / r["path"]).is_file()}
    if "provenance" in frames:
        prov = frames["provenance"]
        prov["command"] = [record_root.hide_root(c) for c in prov.get("command", [])]
        used = {(h, t) for n, f in frames.items() if n != "provenance" and {"host_id", "recorded_at"} <= set(f)
                for h, t in zip(f["host_id"], f["recorded_at"], strict=True)}
        keep = [(h, t) in used for h, t in zip(prov["host_id"], prov["recorded_at"], strict=True)]
        frames["provenance"] = prov[keep].reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="lab-pack-") as tmp:
        staged = Path(tmp) / host_id
        staged.mkdir()
        for r in kept:
            if r["name"] in frames:
                frames[r["name"]].to_csv(staged / r["path"], index=False, lineterminator="\n")
        staged_descriptor = {**descriptor, "resources": kept}
        (staged / datapackage.DESCRIPTOR).write_text(json.dumps(staged_descriptor, ensure_ascii=False, indent=2)
                                                     + "\n", encoding="utf-8")
        checked = check_folder(staged, None, names=private.local_names())
        files = {f"{host_id}/{p.name}": p.read_bytes() for p in sorted(staged.iterdir())}
    newest = max(datetime.fromisoformat(t) for t in checked.frames["provenance"]["recorded_at"])
    blob = build_archive(host_id, files, mtime=int(newest.timestamp()))
    out = Path(output) if output is not None else Path.cwd() / file_name(host_id)
    _write_atomically(out, blob)
    digest = hashlib.sha256(blob).hexdigest()
    _write_atomically(out.with_name(out.name + ".sha256"), f"{digest}  {out.name}\n".encode())
    return Packed(out, digest, len(blob), checked, left_out)


def build_archive(host_id: str, files: dict[str, bytes], mtime: int = 0) -> bytes:
    """The bytes of a contribution file holding ``files`` (``<host-id>/<name>`` -> content) and their manifest.

    It checks nothing: :func:`pack` runs the checks before it calls this.
    """
    manifest = {"format": FORMAT, "host_id": host_id, "packed_by": f"lab {__version__}",
                "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                          for name, data in sorted(files.items())}}
    members = {MANIFEST: (json.dumps(manifest, indent=2) + "\n").encode(), **dict(sorted(files.items()))}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def expected_sha256(path: str | os.PathLike[str], given: str | None = None) -> str | None:
    """The checksum to compare the file with: ``given``, else the one in ``<file>.sha256`` beside it."""
    if given:
        return given.strip().lower()
    sidecar = Path(f"{path}.sha256")
    if sidecar.is_file():
        words = sidecar.read_text(encoding="utf-8", errors="replace").split()
        return words[0].lower() if words else ""
    return None


def unpack(path: str | os.PathLike[str], into: str | os.PathLike[str], sha256: str | None = None) -> Path:
    """Read the contribution file ``path`` into the folder ``into``; return the host folder it holds.

    ``sha256`` is the checksum the contributor sent (a mismatch is a checksum error). Only regular
    files of one host folder and the manifest are accepted, each no larger than a recording can be,
    each matching the checksum in the manifest; nothing is written outside ``into``.
    """
    path = Path(path)
    if sha256 is not None and sha256_of(path) != sha256:
        raise ContributionError("checksum", f"{path.name} has SHA-256 {sha256_of(path)}, not the {sha256} "
                                            f"it was sent with: the file changed on the way")
    members = _read_members(path)
    try:
        manifest = json.loads(members.pop(MANIFEST))
    except KeyError:
        raise ContributionError("archive", f"{path.name} holds no {MANIFEST}: pack it with 'python -m lab pack'") \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContributionError("archive", f"{MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ContributionError("archive", f"{MANIFEST} is not of the format {FORMAT}")
    listed: dict[str, Any] = manifest.get("files") or {}
    if set(listed) != set(members):
        missing, extra = sorted(set(listed) - set(members)), sorted(set(members) - set(listed))
        raise ContributionError("archive", f"the files do not match {MANIFEST}"
                                + (f"; missing {missing}" if missing else "")
                                + (f"; not listed {extra}" if extra else ""))
    for name, data in members.items():
        want = (listed[name] or {}).get("sha256") if isinstance(listed[name], dict) else None
        if hashlib.sha256(data).hexdigest() != want:
            raise ContributionError("checksum", f"{name} does not match its SHA-256 in {MANIFEST}: it was changed "
                                                f"after it was packed")
    hosts = {name.split("/")[0] for name in members}
    if len(hosts) != 1 or manifest.get("host_id") not in hosts:
        raise ContributionError("archive", f"a contribution holds one host folder, the manifest's "
                                           f"({manifest.get('host_id')!r}); this one holds {sorted(hosts)}")
    host_id = hosts.pop()
    target = Path(into) / host_id
    target.mkdir(parents=True)
    for name, data in members.items():
        (target / name.split("/", 1)[1]).write_bytes(data)
    return target


def _read_members(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for info in tar:
                if len(out) >= MAX_FILES:
                    raise ContributionError("archive", f"more than {MAX_FILES} files: not one host's recordings")
                if not info.isfile():
                    raise ContributionError("archive", f"{info.name!r} is not a regular file (links, folders and "
                                                       f"devices are refused)")
                if info.name != MANIFEST and not _MEMBER.fullmatch(info.name):
                    raise ContributionError("archive", f"{info.name!r} is not a file of one host folder "
                                                       f"(<vendor>-<8 hex digits>/<file>)")
                if info.size > MAX_FILE_BYTES:
                    raise ContributionError("archive", f"{info.name!r} is {info.size} bytes, more than a "
                                                       f"recording can be")
                if info.name in out:
                    raise ContributionError("archive", f"{info.name!r} is in the archive twice")
                f = tar.extractfile(info)
                out[info.name] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ContributionError("archive", f"{path.name} is not a contribution packed by 'python -m lab pack' "
                                           f"({exc})") from None
    return out
