"""`invoke demo`: the main job on the local testbed, end to end."""

from invoke import task

from cerniq_ops import settings, survey
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
    """Testbed up, two versions published, deploy v1.0.0, then v1.1.0 under live traffic."""
    from testbed import images
    from testbed.load import Load

    manager = _manager()
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
    result = load.stop()
    say("")
    say(
        f"live traffic during the v1.0.0 -> v1.1.0 rolling deploy: {result.total} requests, "
        f"{result.failed} failed; versions served: {dict(result.versions)}"
    )
    say(f"production is at {prod.public_url} (and {', '.join(urls[1:])})")
