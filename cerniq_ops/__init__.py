"""cerniq-ops: the Cerniq app's procedures as tested, executable steps."""
