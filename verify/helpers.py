"""Small readers shared by the checks: what a testinfra host shows, as plain data."""

from __future__ import annotations

import base64
import json
import shlex

import pytest
import yaml

from cerniq_ops.audit_checks import FileState
from cerniq_ops.compose import TRAEFIK_API_PORT


def problems_or_pass(problems: list[str], detail, passed: str) -> None:
    """Fail naming every problem (joined by `; `), or record what the passing check saw."""
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
    detail(passed)


def read(host, path: str) -> str | None:
    """PATH's content, or None when it does not exist."""
    return read_many(host, [path])[path]


def read_many(host, paths: list[str]) -> dict[str, str | None]:
    """{path: content or None when it is not a file} for PATHS, in one command."""
    script = (
        'for p in "$@"; do if [ -f "$p" ]; then printf \'%s\\t+\' "$p"; base64 -w0 "$p"; echo; '
        "else printf '%s\\t-\\n' \"$p\"; fi; done"
    )
    out = host.run(shlex.join(["sh", "-c", script, "sh", *paths]))
    if out.rc != 0:
        pytest.fail(f"cannot read {', '.join(paths)}: {out.stderr.strip()[:120]}", pytrace=False)
    found: dict[str, str | None] = dict.fromkeys(paths)
    for line in out.stdout.splitlines():
        name, _, payload = line.partition("\t")
        if name in found and payload.startswith("+"):
            found[name] = base64.b64decode(payload[1:]).decode(errors="replace")
    return found


def read_bytes(host, path: str) -> bytes | None:
    f = host.file(path)
    return f.content if f.exists else None


def stat_paths(host, paths: list[str]) -> dict[str, FileState | None]:
    """{path: FileState or None} for PATHS, in one command (`stat` skips the missing ones)."""
    out = host.run("stat -c '%n|%F|%a' -- " + " ".join(shlex.quote(p) for p in paths))
    found: dict[str, FileState | None] = dict.fromkeys(paths)
    for line in out.stdout.splitlines():
        name, _, rest = line.partition("|")
        kind, _, mode = rest.rpartition("|")
        if name in found:
            plain = {"regular file": "file", "regular empty file": "file", "directory": "directory"}
            found[name] = FileState(plain.get(kind, kind), int(mode, 8))
    return found


def traefik_api(host, path: str):
    """GET /api/PATH of the host's Traefik (loopback only): the document, or None for 404.

    Fails the check naming the host's Traefik when its API does not answer.
    """
    url = f"http://127.0.0.1:{TRAEFIK_API_PORT}/api/{path.lstrip('/')}"
    out = host.run(f"curl -sS -m 3 -w '\\n%{{http_code}}' {shlex.quote(url)}")
    body, _, code = out.stdout.rpartition("\n")
    if out.rc != 0 or code in ("", "000"):
        pytest.fail(
            f"Traefik's API does not answer on 127.0.0.1:{TRAEFIK_API_PORT}: "
            f"{(out.stderr.strip() or 'no answer')[:120]}",
            pytrace=False,
        )
    if code == "404":
        return None
    if code != "200":
        pytest.fail(f"Traefik's API /api/{path} answered HTTP {code}", pytrace=False)
    return json.loads(body)


def load_yaml(text: str | None):
    if text is None:
        return None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None
