"""`invoke demo`: the main job on the local testbed, end to end, from a fresh testbed."""

from invoke import task

from cerniq_ops import bluegreen, settings, survey
from cerniq_ops.deploy import deploy
from cerniq_ops.output import say
from cerniq_ops.procedure import Context
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
    blue_green = bluegreen.demo(settings.load("staging"), ("v1.0.0", "v1.1.0"), say)
    say("")
    say(
        f"rolling deploy v1.0.0 -> v1.1.0 on production under load: {rolling.total} requests, "
        f"{rolling.failed} failed; served {dict(rolling.versions)}"
    )
    say(blue_green)
    say(f"production: {', '.join(urls)}; staging: {settings.load('staging').public_url}")
