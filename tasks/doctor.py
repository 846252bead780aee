"""`invoke doctor`: are this machine and the environments' hosts ready for cerniq-ops?"""

from invoke import task
from invoke.exceptions import Exit

from cerniq_ops import doctor as doctor_mod
from cerniq_ops import settings
from cerniq_ops.errors import BadInput
from cerniq_ops.output import emit_json, say
from tasks._cli import cli


@task(
    name="doctor",
    help={
        "env": "staging or production (default: both)",
        "json": "print the findings as JSON on stdout",
        "trust": "first record the host keys not yet known (fingerprints shown; a changed key "
        "is never replaced)",
    },
)
@cli
def doctor(c, env=None, json=False, trust=False):
    """Check the prerequisites (seed 2.1): tools here, secrets (names only), SSH and host keys,
    docker and compose on each host, the db host's sudo rule, the registry, PostgreSQL and
    Redis; one table row per check with a fix hint. Exit 1 when anything FAILs (WARN does not
    fail)."""
    if env is not None and env not in settings.ENVIRONMENTS:
        raise BadInput(
            f"unknown environment '{env}'; choose one of: {', '.join(settings.ENVIRONMENTS)}"
        )
    findings = doctor_mod.run([env] if env else doctor_mod.default_envs(), trust=trust)
    failed = any(f.failed for f in findings)
    if json:
        emit_json({"ok": not failed, "findings": doctor_mod.as_dicts(findings)})
    else:
        say(doctor_mod.render(findings))
        say(doctor_mod.summary(findings))
    if failed:
        raise Exit(code=1)
