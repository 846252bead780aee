"""Host-state checks run by `invoke verify` (and by the e2e tests) through pytest + testinfra.

Each `test_*` function here is one check, parametrised over the environment's hosts of a role
(see conftest.py) and taking a testinfra `host`. It gathers what the host shows and lets a pure
function of cerniq_ops.audit_checks decide; a failure names what is wrong and where.

Run them with `invoke verify --env ENV` (cerniq_ops.verification), not with a bare `pytest`:
the runner passes the environment, and prints one line per check per host.
"""
