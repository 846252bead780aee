"""The local testbed: real SSH hosts (network namespaces), dockerd, a registry and PostgreSQL."""
