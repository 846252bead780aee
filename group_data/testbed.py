"""Overrides when CERNIQ_TARGET=testbed: the local testbed of real servers (`invoke testbed.up`).

Host addresses, the registry address and the public URL come from the generated
`.testbed/group_data/<env>.py`, applied after this file.
"""

registry_scheme = "http"
disk_max_percent = 99
health_interval = 1.0
bluegreen_health_interval = 0.5
github_repo = "cerniq/cerniq-app"
