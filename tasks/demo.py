"""`invoke demo`: the main job on the local testbed, end to end."""

from invoke import task

from cerniq_ops import settings, survey
from cerniq_ops.output import say
from tasks._cli import cli
from tasks.testbed import _manager, aim_at_testbed


@task
@cli
def demo(c):
    """Bring the testbed up, publish two app versions, survey every host with pyinfra."""
    manager = _manager()
    manager.up()
    from testbed import images

    for version in ("v1.0.0", "v1.1.0"):
        images.publish_app(manager.registry(), "cerniq", version)
        say(f"published cerniq/{{api,web,workers}}:{version} to {manager.tb.registry_address}")
    aim_at_testbed(manager)
    reports = [r for env in settings.ENVIRONMENTS for r in survey.survey(settings.load(env))]
    say("")
    say(survey.render(reports))
