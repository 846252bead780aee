"""`invoke demo`: the main job on the local testbed, end to end, from a fresh testbed."""

from invoke import task

from cerniq_ops import bluegreen, settings, survey
from cerniq_ops.clients.http import health
from cerniq_ops.deploy import deploy
from cerniq_ops.output import say
from cerniq_ops.procedure import Context
from cerniq_ops.settings import Settings
from tasks._cli import cli
from tasks.testbed import _manager, aim_at_testbed

DEMO_OPTIONS = {
    "skip_ci_check": True,
    "reason": "demo on the local testbed (no GitHub here)",
    "confirm": "DEPLOY PRODUCTION",
}


@task
@cli
def demo(c):
    """Fresh testbed; deploy v1.0.0, then v1.1.0 under live traffic (rolling, production) and
    a blue-green rollout under live traffic (staging)."""
    from testbed import images
    from testbed.load import Load

    manager = _manager()
    manager.down(quiet=True)  # every demo starts from the same clean state
    manager.up()
    for version in ("v1.0.0", "v1.1.0"):
        images.publish_app(manager.registry(), "cerniq", version)
        say(f"published cerniq/{{api,web,workers}}:{version} to {manager.tb.registry_address}")
    aim_at_testbed(manager)
    reports = [r for env in settings.ENVIRONMENTS for r in survey.survey(settings.load(env))]
    say("")
    say(survey.render(reports))
    say("")
    for env in ("staging", "production"):
        deploy(Context(settings.load(env), "deploy", version="v1.0.0", options=DEMO_OPTIONS))
    prod = settings.load("production")
    urls = [f"http://{h.address}:{prod.health_port}" for h in prod.app_hosts]
    with Load(urls, workers=4) as load:
        load.wait_for_requests(200)
        deploy(Context(prod, "deploy", version="v1.1.0", options={**DEMO_OPTIONS, "batch": "1"}))
        load.wait_for_requests(load.result.total + 200)
    rolling = load.stop()
    say("")
    blue_green = bluegreen_rollout(settings.load("staging"), ("v1.0.0", "v1.1.0"))
    say("")
    say(
        f"rolling deploy v1.0.0 -> v1.1.0 on production under load: {rolling.total} requests, "
        f"{rolling.failed} failed; served {dict(rolling.versions)}"
    )
    say(blue_green)
    say(f"production: {', '.join(urls)}; staging: {settings.load('staging').public_url}")


def bluegreen_rollout(s: Settings, versions: tuple[str, str]) -> str:
    """A blue-green rollout under keep-alive load through every app host of S; its summary.

    A first rollout (--initial) puts what the environment serves now (or VERSIONS[0]) on blue
    when it has no marker; then the other version of the two goes to the idle color while the
    load runs."""
    from testbed.load import Load

    def ctx(name: str, version: str | None, **options) -> Context:
        options.setdefault("confirm", s.confirm_phrase)
        options.setdefault("analysis_seconds", 3)
        return Context(s, name, version=version, options=options, progress=say)

    status_now = bluegreen.status(s)
    if all(row["active"] is None for row in status_now):
        serving = health(s.public_url).version  # what a rolling deploy may already serve
        first = serving if serving in versions else versions[0]
        bluegreen.run_procedure(bluegreen.DEPLOY, ctx("bluegreen.deploy", first, initial=True))
        status_now = bluegreen.status(s)
    active = status_now[0]["active"]
    current = status_now[0]["colors"][active]["version"]
    target = versions[1] if current != versions[1] else versions[0]
    urls = [f"http://{h.address}:{s.health_port}" for h in s.app_hosts]
    with Load(urls, workers=4) as load:
        load.wait_for_requests(200)
        bluegreen.run_procedure(bluegreen.DEPLOY, ctx("bluegreen.deploy", target))
        load.wait_for_requests(load.result.total + 200)
    r = load.result
    return (
        f"blue-green rollout {current} -> {target} on {s.env} under load: {r.total} requests, "
        f"{r.failed} failed; served {dict(r.versions)}"
    )
