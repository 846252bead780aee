"""Production hosts (pyinfra inventory). The first app server holds the deploy lock."""

app_servers = ["app1.cerniq.app", "app2.cerniq.app"]
db_servers = [("db1.cerniq.app", {"db_primary": True})]
