"""pyinfra deploy definitions (@deploy): what changes on hosts, per host from host.data."""
