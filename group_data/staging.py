"""Staging (seed 7.1): pre-production, anonymized production clone."""

public_url = "https://staging.cerniq.app"
db_password_env = "CERNIQ_STAGING_DB_PASSWORD"
redis_password_env = "CERNIQ_STAGING_REDIS_PASSWORD"
