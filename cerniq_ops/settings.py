"""One settings model: an environment = inventory + group data + secrets from the environment.

Resolution order (later wins): group_data/all.py, group_data/<env>.py, and when
CERNIQ_TARGET=testbed also group_data/testbed.py and the generated .testbed/group_data/<env>.py.
The inventory is inventories/<env>.py, or .testbed/inventories/<env>.py for the testbed.
Secrets are never in files: a `*_env` setting names the environment variable holding one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import runpy
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cerniq_ops.errors import BadInput
from cerniq_ops.output import register_secret

ENVIRONMENTS = ("staging", "production")
TARGETS = ("real", "testbed")
PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET_FIELDS = ("db_password_env", "redis_password_env", "slack_webhook_env", "github_token_env")


def testbed_dir() -> Path:
    """Where the testbed keeps its generated inventories, keys and per-host folders."""
    return Path(os.environ.get("CERNIQ_TESTBED_DIR", PROJECT_DIR / ".testbed")).resolve()


@dataclass(frozen=True)
class HostSpec:
    """A host of an environment: its inventory name, groups (roles) and pyinfra host data."""

    name: str
    roles: tuple[str, ...]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The address we connect to (ssh_hostname in pyinfra terms, else the name)."""
        return str(self.data.get("ssh_hostname", self.name))


@dataclass(frozen=True)
class Settings:
    env: str
    target: str
    hosts: tuple[HostSpec, ...]
    app_root: str
    backup_dir: str
    health_port: int
    blue_port: int
    green_port: int
    postgres_port: int
    redis_port: int
    health_retries: int
    health_interval: float
    bluegreen_health_retries: int
    bluegreen_health_interval: float
    disk_warn_percent: int
    disk_max_percent: int
    registry: str
    image_prefix: str
    services: list[str]
    compose_command: list[str]
    compose_project: str
    registry_scheme: str
    traefik_version: str
    api_replicas: int
    db_name: str
    db_user: str
    db_password_env: str
    redis_password_env: str
    migration_lock_timeout: str
    migration_statement_timeout: str
    rollback_error_rate: float
    rollback_latency_factor: float
    rollback_latency_floor: float
    slack_webhook_env: str
    github_repo: str
    github_api: str
    github_token_env: str
    confirm_phrase: str | None
    ssh_user: str
    ssh_port: int
    ssh_known_hosts_file: str
    setup_user: str
    deploy_public_key_file: str
    docker_packages: list[str]
    db_clients: list[str]
    public_url: str
    backup_keep_last: int
    backup_keep_days: float
    backup_scratch_prefix: str
    backup_max_verified_age_hours: float
    pg_bin_dir: str
    db_socket_dir: str
    db_os_user: str
    deploy_lock_max_age_minutes: float
    bluegreen_analysis_seconds: float
    bluegreen_scale_down_delay: float
    bluegreen_canary_steps: list[int]
    bluegreen_canary_pause: float
    bluegreen_min_requests: int
    bluegreen_latency_floor: float
    backup_compress_level: int
    migrations_dir: str
    migration_backup: str
    backup_verify_restore: bool
    restore_keep_previous_hours: float
    hooks_dir: str
    maintenance_image: str
    prune_retain: int

    @property
    def migrations_path(self) -> Path:
        """The migrations folder (a relative `migrations_dir` is relative to the project)."""
        return (PROJECT_DIR / self.migrations_dir).resolve()

    # -- hosts ---------------------------------------------------------------------------
    def hosts_in(self, role: str) -> list[HostSpec]:
        return [h for h in self.hosts if role in h.roles]

    @property
    def app_hosts(self) -> list[HostSpec]:
        return self.hosts_in("app_servers")

    @property
    def primary_host(self) -> HostSpec:
        """The host that holds the deploy lock, the markers and the audit log of record."""
        return self.app_hosts[0]

    @property
    def db_host(self) -> HostSpec:
        dbs = self.hosts_in("db_servers")
        primary = [h for h in dbs if h.data.get("db_primary")]
        if not (primary or dbs):
            raise BadInput(f"environment '{self.env}' has no db_servers in its inventory")
        return (primary or dbs)[0]

    @property
    def known_hosts_file(self) -> str:
        """The known-hosts file of the setting, `~` expanded (host keys are always checked)."""
        return os.path.expanduser(self.ssh_known_hosts_file)

    # -- images --------------------------------------------------------------------------
    def image(self, service: str, version: str) -> str:
        return f"{self.registry}/{self.image_prefix}/{service}:{version}"

    # -- secrets -------------------------------------------------------------------------
    def secret(self, env_field: str) -> str | None:
        """The value of the secret named by setting `env_field`, or None when unset."""
        value = os.environ.get(getattr(self, env_field)) or None
        register_secret(value)
        return value

    def require_secret(self, env_field: str) -> str:
        value = self.secret(env_field)
        if value is None:
            raise BadInput(
                f"missing secret: set the environment variable {getattr(self, env_field)} "
                f"({env_field.removesuffix('_env').replace('_', ' ')} for {self.env})"
            )
        return value

    def secret_values(self) -> list[str]:
        """Every secret value currently set: what redaction must hide."""
        return [v for f in SECRET_FIELDS if (v := self.secret(f))]

    def hide_secrets(self) -> None:
        """Register every secret set, also percent-encoded (as the app's env file carries them
        in DATABASE_URL and REDIS_URL), for redaction: before printing what hosts or containers
        say (`invoke exec`, `invoke logs`)."""
        for value in self.secret_values():
            register_secret(urllib.parse.quote(value, safe=""))

    # -- database ------------------------------------------------------------------------
    def db_conninfo(self, password: str | None = None) -> dict[str, Any]:
        """psycopg connection keywords for this environment's database (password explicit)."""
        host = self.db_host
        info: dict[str, Any] = {
            "host": str(host.data.get("db_address", host.address)),
            "port": int(host.data.get("db_port", self.postgres_port)),
            "dbname": self.db_name,
            "user": self.db_user,
            "application_name": f"cerniq-ops/{self.env}",
            "connect_timeout": 10,
        }
        if password:
            info["password"] = password
        return info

    def redis_address(self) -> tuple[str, int]:
        """Where the app's Redis listens: the db host (host data `redis_address`/`redis_port`
        override the db host's address and the `redis_port` setting)."""
        host = self.db_host
        return (
            str(host.data.get("redis_address", host.address)),
            int(host.data.get("redis_port", self.redis_port)),
        )

    def public_view(self) -> dict[str, Any]:
        """Everything resolved, secrets shown only as set/missing: what `env.show` prints."""
        view = {k: v for k, v in dataclasses.asdict(self).items() if k != "hosts"}
        for f in SECRET_FIELDS:
            view[f] = f"{getattr(self, f)} ({'set' if self.secret(f) else 'missing'})"
        view["hosts"] = [
            {"name": h.name, "roles": list(h.roles), "address": h.address} for h in self.hosts
        ]
        return view


def _module_values(path: Path) -> dict[str, Any]:
    """The public module-level names of a group data / inventory file."""
    if not path.exists():
        return {}
    return {
        k: v
        for k, v in runpy.run_path(str(path)).items()
        if not k.startswith("_") and not callable(v) and not isinstance(v, type(os))
    }


def _hosts_from_inventory(path: Path) -> tuple[HostSpec, ...]:
    if not path.exists():
        raise BadInput(f"inventory {path} does not exist")
    roles: dict[str, list[str]] = {}
    data: dict[str, dict[str, Any]] = {}
    for group, members in _module_values(path).items():
        if not isinstance(members, list | tuple):
            continue
        for member in members:
            name, host_data = member if isinstance(member, tuple) else (member, {})
            roles.setdefault(name, []).append(group)
            data.setdefault(name, {}).update(host_data)
    return tuple(HostSpec(n, tuple(r), data[n]) for n, r in roles.items())


def current_target() -> str:
    target = os.environ.get("CERNIQ_TARGET", "real")
    if target not in TARGETS:
        raise BadInput(f"unknown CERNIQ_TARGET '{target}'; choose one of: {', '.join(TARGETS)}")
    return target


OVERRIDE_PREFIX = "CERNIQ_OVERRIDE_"


def _overrides(values: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Settings given as CERNIQ_OVERRIDE_<NAME>=value (CI pipelines, tests), typed like the
    value they replace; lists are comma-separated."""
    result: dict[str, Any] = {}
    for var, raw in os.environ.items():
        if not var.startswith(OVERRIDE_PREFIX):
            continue
        name = var.removeprefix(OVERRIDE_PREFIX).lower()
        if name not in known:
            raise BadInput(f"unknown setting in {var}; settings are the names in group_data/all.py")
        current = values.get(name)
        try:
            if isinstance(current, bool):
                result[name] = raw.lower() in ("1", "true", "yes")
            elif isinstance(current, int | float):
                result[name] = type(current)(raw)
            elif isinstance(current, list):
                result[name] = [item.strip() for item in raw.split(",") if item.strip()]
            else:
                result[name] = raw
        except ValueError:
            raise BadInput(f"{var}={raw!r} is not a valid {type(current).__name__}") from None
    return result


# Settings that reach shells, file names, compose, image references or SQL: checked at load,
# so a bad value is one BadInput naming the setting, before anything connects.
_NAME = r"[a-z_][a-z0-9_]{0,62}"  # an unquoted SQL identifier / a login name
_PATH = r"/(?:[A-Za-z0-9._-]+/?)*"  # an absolute path without spaces or shell characters
_IMAGE_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IDENTIFIERS: dict[str, tuple[str, str]] = {  # setting: (pattern, what it must look like)
    "compose_project": (r"[a-z0-9][a-z0-9_-]*", "a compose project name like cerniq"),
    "db_name": (_NAME, "a lowercase SQL identifier like cerniq"),
    "db_user": (_NAME, "a lowercase SQL identifier like c3rn1q"),
    "db_os_user": (r"[a-z_][a-z0-9_-]{0,31}", "a login name like postgres"),
    "ssh_user": (r"[a-z_][a-z0-9_-]{0,31}", "a login name like deploy"),
    "backup_scratch_prefix": (r"[a-z_][a-z0-9_]{0,39}", "a lowercase SQL identifier prefix"),
    "app_root": (_PATH, "an absolute path like /opt/cerniq"),
    "backup_dir": (_PATH, "an absolute path like /backup"),
    "pg_bin_dir": (_PATH, "an absolute path like /usr/lib/postgresql/15/bin"),
    "db_socket_dir": (_PATH, "an absolute path like /run/postgresql"),
    "image_prefix": (rf"{_IMAGE_PART}(?:/{_IMAGE_PART})*", "an image path like cerniq"),
    "registry": (r"[A-Za-z0-9][A-Za-z0-9.-]*(?::\d{1,5})?", "a registry host[:port]"),
    "traefik_version": (r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "an image tag like v3.7.15"),
    "migration_lock_timeout": (r"\d+(?:ms|s|min|h|d)?", "a PostgreSQL duration like 5s"),
    "migration_statement_timeout": (r"\d+(?:ms|s|min|h|d)?", "a PostgreSQL duration like 15min"),
    "github_repo": (r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", "owner/name"),
    "maintenance_image": (
        rf"{_IMAGE_PART}:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}",
        "name:tag like busybox:1.36",
    ),
}
SERVICE_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")


def validate(values: dict[str, Any]) -> None:
    """BadInput naming the first setting whose value could not be used safely as is."""
    for name, (pattern, shape) in IDENTIFIERS.items():
        value = values.get(name)
        ok = isinstance(value, str) and re.fullmatch(pattern, value, re.ASCII)
        if ok and name.endswith(("_root", "_dir")) and "/../" in f"{value}/":
            ok = None
        if not ok:
            raise BadInput(f"invalid setting {name}={value!r}: expected {shape}")
    services = values.get("services")
    if not isinstance(services, list) or not all(
        isinstance(v, str) and SERVICE_RE.fullmatch(v) for v in services
    ):
        raise BadInput(f"invalid setting services={services!r}: expected names like api, web")


def load(env: str | None, target: str | None = None, project_dir: Path = PROJECT_DIR) -> Settings:
    """Resolve the settings of ENV; BadInput (one line, exit 2) for anything unknown."""
    if env is None:
        raise BadInput(f"--env is required; choose one of: {', '.join(ENVIRONMENTS)}")
    if env not in ENVIRONMENTS:
        raise BadInput(f"unknown environment '{env}'; choose one of: {', '.join(ENVIRONMENTS)}")
    target = target or current_target()
    layers = [project_dir / "group_data" / "all.py", project_dir / "group_data" / f"{env}.py"]
    inventory = project_dir / "inventories" / f"{env}.py"
    if target == "testbed":
        generated = testbed_dir()
        layers += [
            project_dir / "group_data" / "testbed.py",
            generated / "group_data" / f"{env}.py",
        ]
        inventory = generated / "inventories" / f"{env}.py"
        if not inventory.exists():
            raise BadInput(
                "the testbed is not up (no generated inventory); run `invoke testbed.up`"
            )
    values: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(Settings)} - {"env", "target", "hosts"}
    for layer in layers:
        layer_values = _module_values(layer)
        unknown = sorted(set(layer_values) - known)
        if unknown:
            raise BadInput(f"unknown setting(s) {', '.join(unknown)} in {layer}")
        values.update(layer_values)
    values.update(_overrides(values, known))
    missing = sorted(known - set(values))
    if missing:
        raise BadInput(f"setting(s) {', '.join(missing)} missing for environment '{env}'")
    validate(values)
    return Settings(env=env, target=target, hosts=_hosts_from_inventory(inventory), **values)
