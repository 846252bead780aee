"""A Docker Registry HTTP API v2 client: list tags, check manifests, push blobs and manifests."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import requests

from cerniq_ops.errors import CerniqError

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?\Z")


class RegistryError(CerniqError):
    """The registry could not be reached or refused a request."""


def version_key(tag: str) -> tuple:
    """Sort key putting semantic versions in release order (pre-releases before releases)."""
    m = _SEMVER.match(tag)
    if not m:
        return (-1, tag)
    major, minor, patch, pre = m.groups()
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre or "")


@dataclass
class Registry:
    """`address` is host:port; plain HTTP on the testbed, HTTPS elsewhere."""

    address: str
    scheme: str = "https"
    timeout: float = 30.0

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.address}/v2"

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            return requests.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise RegistryError(f"registry {self.address} unreachable: {exc}") from exc

    def tags(self, repository: str) -> list[str]:
        """Tags of REPOSITORY in version order (oldest first); [] when it has none."""
        r = self._request("GET", f"{self.base}/{repository}/tags/list")
        if r.status_code == 404:
            return []
        if r.status_code != 200:
            raise RegistryError(
                f"registry {self.address}: listing {repository} gave {r.status_code}"
            )
        return sorted(r.json().get("tags") or [], key=version_key)

    def has_manifest(self, repository: str, tag: str) -> bool:
        r = self._request(
            "HEAD", f"{self.base}/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_V2}
        )
        return r.status_code == 200

    def has_blob(self, repository: str, digest: str) -> bool:
        return self._request("HEAD", f"{self.base}/{repository}/blobs/{digest}").status_code == 200

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload DATA (monolithic) unless present; return its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.has_blob(repository, digest):
            return digest
        start = self._request("POST", f"{self.base}/{repository}/blobs/uploads/")
        if start.status_code != 202:
            raise RegistryError(f"registry {self.address}: upload start gave {start.status_code}")
        location = start.headers["Location"]
        if location.startswith("/"):
            location = f"{self.scheme}://{self.address}{location}"
        sep = "&" if "?" in location else "?"
        put = self._request(
            "PUT",
            f"{location}{sep}digest={digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if put.status_code != 201:
            raise RegistryError(f"registry {self.address}: blob upload gave {put.status_code}")
        return digest

    def push_image(
        self, repository: str, tag: str, layers: list[tuple[bytes, str]], config: dict
    ) -> str:
        """Push an image made of LAYERS [(gzipped tar, diff_id)] and CONFIG; return its digest."""
        layer_refs = [
            {"mediaType": LAYER_GZIP, "size": len(blob), "digest": self.push_blob(repository, blob)}
            for blob, _ in layers
        ]
        config = {**config, "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}
        config_bytes = json.dumps(config, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {
                "mediaType": CONFIG_V1,
                "size": len(config_bytes),
                "digest": self.push_blob(repository, config_bytes),
            },
            "layers": layer_refs,
        }
        body = json.dumps(manifest).encode()
        r = self._request(
            "PUT",
            f"{self.base}/{repository}/manifests/{tag}",
            data=body,
            headers={"Content-Type": MANIFEST_V2},
        )
        if r.status_code != 201:
            raise RegistryError(f"registry {self.address}: manifest push gave {r.status_code}")
        return "sha256:" + hashlib.sha256(body).hexdigest()
