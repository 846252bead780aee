"""`invoke prune` (and the end of `invoke deploy`, as Kamal does): old app containers and images
removed from every app host.

On each app host: the app's exited (or dead) containers (any compose project of the app:
rolling, blue, green, the maintenance page), then the app's images (`<registry>/<prefix>/<service>`
with a release tag) older than the newest N versions on that host. Never removed: the version a
container of the app still uses (running: the current version, or the idle color), the host's
current-version and previous-version (what a rollback goes back to), and anything that is not
the app's (Traefik, the page server, untagged images). Images are removed by reference, not by
ID (one ID may carry several tags). `--dry-run` lists what would go.
"""

from __future__ import annotations

from dataclasses import dataclass

from cerniq_ops import hosts
from cerniq_ops.clients.registry import version_key
from cerniq_ops.deploy_inputs import VERSION_RE
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context, Report, run, step
from cerniq_ops.settings import Settings

DEFAULT_RETAIN = 3
GONE_STATES = ("exited", "dead", "created")


@dataclass(frozen=True)
class Box:
    """A container of the app, as `docker ps -a` shows it."""

    id: str
    image: str
    project: str
    service: str
    state: str


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Plan:
    containers: tuple[Box, ...]  # to remove
    images: tuple[Image, ...]  # to remove
    kept: tuple[str, ...]  # versions kept, newest first

    def lines(self, host: str) -> list[str]:
        out = [
            f"{host}: container {c.id[:12]} ({c.project}/{c.service}, {tag_of(c.image)}, {c.state})"
            for c in self.containers
        ]
        out += [f"{host}: image {i.ref}" for i in self.images]
        return out


# -- pure ------------------------------------------------------------------------------------
def tag_of(image: str) -> str:
    return image.rsplit(":", 1)[-1]


def containers_command() -> list[str]:
    """Every compose-labelled container, in every state, with its project and service."""
    fmt = (
        '{{.ID}} {{.Image}} {{.Label "com.docker.compose.project"}} '
        '{{.Label "com.docker.compose.service"}} {{.State}}'
    )
    return ["docker", "ps", "-a", "--filter", "label=com.docker.compose.project", "--format", fmt]


def images_command() -> list[str]:
    return ["docker", "images", "--format", "{{.Repository}} {{.Tag}}"]


def parse_containers(output: str, s: Settings) -> list[Box]:
    """The app's containers (projects `<compose_project>` and `<compose_project>-*`, but not
    the edge: Traefik is not the app)."""
    found = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        box = Box(*parts)
        ours = box.project == s.compose_project or box.project.startswith(f"{s.compose_project}-")
        if ours and box.project != f"{s.compose_project}-edge":
            found.append(box)
    return found


def parse_images(output: str, s: Settings) -> list[Image]:
    """The app's images with a release tag (`<registry>/<prefix>/<service>:vX.Y.Z`)."""
    repositories = {f"{s.registry}/{s.image_prefix}/{svc}" for svc in s.services}
    found = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in repositories and VERSION_RE.match(parts[1]):
            found.append(Image(parts[0], parts[1]))
    return found


def plan(
    containers: list[Box],
    images: list[Image],
    retain: int,
    current: str | None,
    previous: str | None,
) -> Plan:
    """What to remove: exited containers; images of versions not among the RETAIN newest,
    never CURRENT, PREVIOUS or a version a remaining container uses."""
    gone = [c for c in containers if c.state in GONE_STATES]
    staying = [c for c in containers if c.state not in GONE_STATES]
    used = {tag_of(c.image) for c in staying}
    versions = sorted({i.tag for i in images}, key=version_key, reverse=True)
    keep = set(versions[:retain]) | used | {v for v in (current, previous) if v}
    drop = tuple(
        sorted(
            (i for i in images if i.tag not in keep),
            key=lambda i: (version_key(i.tag), i.repository),
        )
    )
    return Plan(tuple(gone), drop, tuple(v for v in versions if v in keep))


def retain_count(value: object) -> int:
    from cerniq_ops.deploy_inputs import number

    retain = int(number("retain", value, kind=int, minimum=1, default=DEFAULT_RETAIN))
    if retain > 100:
        raise BadInput(f"invalid --retain {value!r}: expected a whole number from 1 to 100")
    return retain


# -- on hosts --------------------------------------------------------------------------------
def host_plan(host, s: Settings, retain: int) -> Plan:
    _, ps, _ = hosts.sh(host, containers_command())
    _, listed, _ = hosts.sh(host, images_command())
    markers = {
        name: (hosts.read_file(host, f"{s.app_root}/{name}") or "").strip() or None
        for name in ("current-version", "previous-version")
    }
    return plan(
        parse_containers(ps, s),
        parse_images(listed, s),
        retain,
        markers["current-version"],
        markers["previous-version"],
    )


def apply(host, p: Plan) -> None:
    if p.containers:
        hosts.sh(host, ["docker", "rm", "-f", *(c.id for c in p.containers)])
    if p.images:
        hosts.sh(host, ["docker", "rmi", *(i.ref for i in p.images)], timeout=300)


def prune_hosts(ctx: Context, retain: int) -> str:
    """Every app host: plan, then (not in a dry run) remove; the lines say what (would) go."""
    s, removed, kept = ctx.settings, 0, {}
    for spec in s.app_hosts:
        host = ctx.host(spec)
        p = host_plan(host, s, retain)
        for line in p.lines(spec.name):
            ctx.note(f"{'would remove' if ctx.dry_run else 'removing'} {line}")
        if not ctx.dry_run:
            apply(host, p)
        removed += len(p.containers) + len(p.images)
        kept[spec.name] = list(p.kept)
    ctx.facts["pruned"] = removed
    ctx.facts["kept"] = kept
    verb = "would remove" if ctx.dry_run else "removed"
    versions = sorted({v for vs in kept.values() for v in vs}, key=version_key, reverse=True)
    return f"{verb} {removed} container(s)/image(s); kept {', '.join(versions) or 'nothing'}"


# -- the procedure ---------------------------------------------------------------------------
@step(offline=True)
def check_retain(ctx: Context) -> str:
    ctx.options["retain"] = retain_count(ctx.options.get("retain"))
    return f"retain the newest {ctx.options['retain']} version(s) plus current and previous"


@step()
def prune_app_hosts(ctx: Context) -> str:
    return prune_hosts(ctx, ctx.options["retain"])


PRUNE = (check_retain, prune_app_hosts)


def prune(ctx: Context) -> Report:
    return run(PRUNE, ctx)


@step()
def prune_old_versions(ctx: Context) -> str:
    """The deploy's last change (Kamal prunes after a deploy): old containers and images on
    every app host, the newest `prune_retain` versions kept; a failure here is a warning."""
    try:
        return prune_hosts(ctx, ctx.settings.prune_retain)
    except StepFailed as exc:
        return f"warning: prune failed ({exc}); run `invoke prune --env {ctx.env}`"
