"""Staging hosts (pyinfra inventory: groups are lists of hosts or (host, data) tuples)."""

app_servers = ["staging.cerniq.app"]
db_servers = [("staging-db.cerniq.app", {"db_primary": True})]
