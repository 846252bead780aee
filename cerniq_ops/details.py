"""`invoke details`: what runs where, per app host (Kamal's `details`), read only.

Per app host, read at once (a thread and SSH connection per host): the containers of every
compose project of the app and its edge (service, version, state, health, uptime), Traefik's
routers and services of the docker and file providers (rule, service, status; each server's
UP/DOWN), the active color (`active-env`) and maintenance mode. For the environment: the deploy
lock (on the primary) and the last deploy, switch or rollback in the audit log. No lock is taken
and nothing is written.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cerniq_ops import audit, hosts, lock, traefik
from cerniq_ops.errors import StepFailed
from cerniq_ops.output import table
from cerniq_ops.settings import Settings

CHANGES = ("deploy", "bluegreen.deploy", "bluegreen.switch", "bluegreen.canary", "rollback")
HEALTH_RE = re.compile(r"\((healthy|unhealthy|health: starting)\)")
PROVIDERS = ("docker", "file")


# -- pure ------------------------------------------------------------------------------------
def containers_command() -> list[str]:
    fmt = (
        '{{.ID}}|{{.Image}}|{{.Label "com.docker.compose.project"}}|'
        '{{.Label "com.docker.compose.service"}}|{{.State}}|{{.Status}}'
    )
    return ["docker", "ps", "-a", "--filter", "label=com.docker.compose.project", "--format", fmt]


def parse_containers(output: str, s: Settings) -> list[dict[str, str]]:
    """The app's and its edge's containers (projects `<compose_project>`, `<compose_project>-*`),
    by project then service."""
    rows = []
    for line in output.splitlines():
        parts = line.split("|")
        if len(parts) != 6:
            continue
        cid, image, project, service, state, status = parts
        if project != s.compose_project and not project.startswith(f"{s.compose_project}-"):
            continue
        health = HEALTH_RE.search(status)
        rows.append(
            {
                "project": project,
                "service": service,
                "version": image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else "-",
                "state": state,
                "health": health.group(1) if health else "-",
                "uptime": HEALTH_RE.sub("", status).strip() or "-",
                "id": cid[:12],
            }
        )
    return sorted(rows, key=lambda r: (r["project"], r["service"], r["id"]))


def routers(documents: list[dict] | None) -> list[dict[str, str]]:
    return sorted(
        (
            {
                "name": str(r.get("name")),
                "rule": str(r.get("rule", "-")),
                "service": str(r.get("service", "-")),
                "status": str(r.get("status", "-")),
                "priority": str(r.get("priority", "-")),
            }
            for r in documents or []
            if r.get("provider") in PROVIDERS
        ),
        key=lambda r: r["name"],
    )


def services(documents: list[dict] | None) -> list[dict[str, Any]]:
    return sorted(
        (
            {"name": str(d.get("name")), "servers": dict(sorted(traefik.server_status(d).items()))}
            for d in documents or []
            if d.get("provider") in PROVIDERS
        ),
        key=lambda d: d["name"],
    )


def last_change(records: list[dict]) -> dict | None:
    """The newest audit record of a deploy, switch or rollback (its last step written)."""
    found = [r for r in records if r.get("procedure") in CHANGES]
    return found[-1] if found else None


def render(doc: dict) -> list[str]:
    """The text of `invoke details` from its JSON document."""
    out = []
    for h in doc["hosts"]:
        out.append(
            f"== {h['host']} ({h['address']}): active color {h['active_color'] or '-'}, "
            f"maintenance {'ON' if h['maintenance'] else 'off'}"
        )
        rows = [
            (
                f"{c['project']}/{c['service']}",
                c["version"],
                c["state"],
                c["health"],
                c["uptime"],
                c["id"],
            )
            for c in h["containers"]
        ]
        headers = ("container", "version", "state", "health", "uptime", "id")
        out += [f"   {line}" for line in table(headers, rows).splitlines()]
        if h.get("traefik_error"):
            out.append(f"   traefik: {h['traefik_error']}")
            continue
        out.append("   traefik routers")
        for r in h["routers"]:
            out.append(f"     {r['name']}  {r['rule']}  -> {r['service']}  {r['status']}")
        out.append("   traefik servers")
        for svc in h["services"]:
            servers = ", ".join(f"{u} {st}" for u, st in svc["servers"].items()) or "none"
            out.append(f"     {svc['name']}: {servers}")
    held = doc["lock"]
    out.append(f"== {doc['env']}: lock {held or 'free'}")
    last = doc["last_change"]
    if last:
        out.append(
            f"   last change: {last.get('at')} {last.get('who')} {last.get('procedure')} "
            f"{last.get('version') or '-'}: {last.get('step')} {last.get('result')}"
        )
    else:
        out.append("   last change: none in the audit log")
    return out


# -- reading hosts ---------------------------------------------------------------------------
def read_host(host, spec, s: Settings) -> dict[str, Any]:
    _, ps, _ = hosts.sh(host, containers_command())
    root = s.app_root
    row: dict[str, Any] = {
        "host": spec.name,
        "address": spec.address,
        "active_color": (hosts.read_file(host, f"{root}/active-env") or "").strip() or None,
        "maintenance": hosts.read_file(host, f"{root}/traefik/dynamic/maintenance.yml") is not None,
        "containers": parse_containers(ps, s),
    }
    try:
        row["routers"] = routers(traefik.api_get(host, "http/routers"))  # type: ignore[arg-type]
        row["services"] = services(traefik.api_get(host, "http/services"))  # type: ignore[arg-type]
    except StepFailed as exc:
        row["traefik_error"] = str(exc)
    return row


def gather(state, s: Settings) -> dict[str, Any]:
    pairs = [(state.inventory.get_host(spec.name), spec) for spec in s.app_hosts]
    with ThreadPoolExecutor(max_workers=len(pairs), thread_name_prefix="details") as pool:
        rows = list(pool.map(lambda p: read_host(p[0], p[1], s), pairs))
    primary = state.inventory.get_host(s.primary_host.name)
    held = lock.status(primary, s)
    return {
        "env": s.env,
        "hosts": rows,
        "lock": held.describe(s.env) if held else None,
        "last_change": last_change(audit.read(primary, s, limit=500)),
    }
