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

ns = Collection()
for _name in NAMESPACES:
    ns.add_collection(Collection.from_module(import_module(f"tasks.{_name}")))
for _module, _task in TOP_LEVEL:
    ns.add_task(getattr(import_module(f"tasks.{_module}"), _task))
