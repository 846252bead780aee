"""invoke entry point: assembles one namespace per procedure. Each module is thin."""

from invoke import Collection

from tasks import env

ns = Collection()
ns.add_collection(Collection.from_module(env))
