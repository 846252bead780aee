"""invoke entry point: assembles one namespace per procedure. Each module is thin.

A namespace is a module tasks/<name>.py (its tasks become `invoke <name>.<task>`); top-level
tasks (`invoke deploy`) are listed by module and task name.
"""

import sys
from importlib import import_module
from pathlib import Path

from invoke import Collection

# invoke puts this folder itself on sys.path; that would let tasks/testbed.py shadow the
# top-level `testbed` package. Task modules are imported as `tasks.X`: put the project root
# there instead.
_here = Path(__file__).resolve().parent
sys.path[:] = [str(_here.parent) if Path(p or ".").resolve() == _here else p for p in sys.path]

NAMESPACES = ("env", "db", "backup", "bluegreen", "incident", "lock", "rollback", "testbed")
NAMESPACES += ("review",)  # team procedures (issue 15), one line each
NAMESPACES += ("oncall",)
NAMESPACES += ("ci",)
NAMESPACES += ("docs",)
NAMESPACES += ("release", "hotfix")  # releases and hotfixes (issue 14)
TOP_LEVEL = (
    ("demo", "demo"),
    ("deploy", "deploy"),
    ("deploy", "history"),
    ("verify", "verify"),
    ("doctor", "doctor"),
    ("setup", "setup"),
)
TOP_LEVEL += (("testrun", "test"),)  # team procedures (issue 15), one line each
TOP_LEVEL += (("maintenance", "maintenance"),)  # the operator's toolbox (issue 16)
TOP_LEVEL += (("prune", "prune"), ("logs", "logs"), ("exec", "exec_"), ("details", "details"))


def wanted_modules(argv: list[str]) -> set[str] | None:
    """The task modules a command line names (`invoke lock.release --env x` -> {'lock'}), so
    a run imports only what its tasks need (every module pulls in its procedures, pyinfra,
    psycopg, Slack's and GitHub's clients: ~0.5 s of CPU at each start); None, for every
    module, when it names none (`invoke --list`, `--help`, a typo invoke then reports) or is
    not invoke's (tests import this package)."""
    if Path(argv[0]).name not in ("invoke", "inv"):
        return None
    by_task = {task.rstrip("_"): module for module, task in TOP_LEVEL}  # exec_ is `exec`
    named = set()
    for arg in argv[1:]:
        head = arg.split(".", 1)[0].replace("-", "_")
        if head in NAMESPACES:
            named.add(head)
        elif arg in by_task:
            named.add(by_task[arg])
    return named or None


_wanted = wanted_modules(sys.argv)
ns = Collection()
for _name in NAMESPACES:
    if _wanted is None or _name in _wanted:
        ns.add_collection(Collection.from_module(import_module(f"tasks.{_name}")))
for _module, _task in TOP_LEVEL:
    if _wanted is None or _module in _wanted:
        ns.add_task(getattr(import_module(f"tasks.{_module}"), _task))
# `--env` is always a flag: as invoke's positional argument it took the next word, so
# `invoke deploy --help` said "unknown environment '--help'"
for _task in (ns[name] for name in ns.task_names):
    _task.positional = [name for name in _task.positional if name != "env"]
