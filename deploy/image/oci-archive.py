#!/usr/bin/env python3
"""Write a FROM-scratch OCI image as an OCI archive, from files on this machine.

Used by deploy/image/build (the controller image) and tests/cluster/node.sh (the pause image).
Standard library only. The archive is an OCI image layout (oci-layout, index.json,
blobs/sha256/...) in a tar, plus Docker's manifest.json so that `docker load` reads it too.
Every byte is a function of the inputs: tar entries are sorted, owned by root with the given
time, and gzip carries no name or timestamp. No base image: the one layer holds exactly the
files given.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tarfile
import time

def is_static_elf(data: bytes) -> bool:
    """True when the ELF file has no PT_INTERP program header (no dynamic loader needed)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit("error: the binary is not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def layer(files: dict, dirs: dict, links: dict, mtime: int) -> bytes:
    """A tar of the given files (dest -> (bytes, mode)), directories and symbolic links."""
    entries = {}
    for path in list(files) + list(dirs) + list(links):
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), ("dir", 0o755, None))
    for path, mode in dirs.items():
        entries[path] = ("dir", mode, None)
    for path, (data, mode) in files.items():
        entries[path] = ("file", mode, data)
    for path, target in links.items():
        entries[path] = ("link", 0o777, target)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            kind, mode, data = entries[path]
            info = tarfile.TarInfo(path)
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = mtime
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def pairs(values, what):
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            sys.exit(f"error: {what} wants KEY=VALUE, got {v!r}")
        out[key] = val
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the OCI archive to write")
    ap.add_argument("--name", required=True, help="image reference, e.g. localhost/sealant-controller:0.1.0")
    ap.add_argument("--file", action="append", default=[], metavar="SRC=DEST", help="copy a file into the image")
    ap.add_argument("--dir", action="append", default=[], metavar="DEST=MODE", help="an (empty) directory, octal mode")
    ap.add_argument("--symlink", action="append", default=[], metavar="DEST=TARGET")
    ap.add_argument("--entrypoint", required=True)
    ap.add_argument("--user", required=True, help="uid:gid the image runs as")
    ap.add_argument("--port", action="append", default=[], help="exposed TCP port")
    ap.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="label and annotation")
    ap.add_argument("--created", required=True, type=int, help="time of every entry, seconds since the epoch")
    args = ap.parse_args()

    files = {}
    for dest, src in ((d.lstrip("/"), s) for s, d in pairs(args.file, "--file").items()):
        with open(src, "rb") as f:
            data = f.read()
        files[dest] = (data, 0o755 if os.access(src, os.X_OK) else 0o644)
    entry = args.entrypoint.lstrip("/")
    if entry not in files:
        sys.exit(f"error: the entrypoint {args.entrypoint} is not among the --file destinations")
    if not is_static_elf(files[entry][0]):
        sys.exit(f"error: {args.entrypoint} is dynamically linked; a FROM-scratch image has no libc (build it static)")
    dirs = {d.lstrip("/"): int(m, 8) for d, m in pairs(args.dir, "--dir").items()}
    links = {d.lstrip("/"): t for d, t in pairs(args.symlink, "--symlink").items()}
    labels = pairs(args.label, "--label")
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.created))

    diff = layer(files, dirs, links, args.created)
    blob = gzip_bytes(diff)
    config = canonical(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": {
                "User": args.user,
                "Entrypoint": [args.entrypoint],
                "ExposedPorts": {f"{p}/tcp": {} for p in args.port},
                "WorkingDir": "/",
                "Labels": labels,
            },
            "rootfs": {"type": "layers", "diff_ids": [sha256(diff)]},
            "history": [{"created": created, "created_by": "deploy/image/oci-archive.py"}],
        }
    )
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(blob),
                    "size": len(blob),
                }
            ],
            **({"annotations": labels} if labels else {}),
        }
    )
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha256(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": args.name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
    )

    def blob_path(data: bytes) -> str:
        return "blobs/sha256/" + hashlib.sha256(data).hexdigest()

    docker_manifest = canonical(
        [{"Config": blob_path(config), "RepoTags": [args.name], "Layers": [blob_path(blob)]}]
    )
    entries = [
        ("blobs", None),
        ("blobs/sha256", None),
        (blob_path(blob), blob),
        (blob_path(config), config),
        (blob_path(manifest), manifest),
        ("index.json", index),
        ("manifest.json", docker_manifest),
        ("oci-layout", canonical({"imageLayoutVersion": "1.0.0"})),
    ]
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mtime = args.created
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.mode, info.size = 0o644, len(data)
                tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, args.out)
    print(
        f"image: {args.name} ({sha256(manifest)}), layer {len(blob) / 1e6:.1f} MB compressed, "
        f"archive {os.path.getsize(args.out) / 1e6:.1f} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
