"""invoke entry point: assembles one namespace per procedure. Each module is thin."""

import sys
from pathlib import Path

from invoke import Collection

# invoke puts this folder itself on sys.path; that would let tasks/testbed.py shadow the
# top-level `testbed` package. Task modules are imported as `tasks.X`: put the project root
# there instead.
_here = Path(__file__).resolve().parent
sys.path[:] = [str(_here.parent) if Path(p or ".").resolve() == _here else p for p in sys.path]

from tasks import db, demo, deploy, env, lock, testbed  # noqa: E402

ns = Collection()
ns.add_collection(Collection.from_module(env))
ns.add_collection(Collection.from_module(db))
ns.add_collection(Collection.from_module(testbed))
ns.add_collection(Collection.from_module(lock))
ns.add_task(demo.demo)
ns.add_task(deploy.deploy)
ns.add_task(deploy.history)
