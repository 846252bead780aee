"""Production (seed 7.1): the live system; deploys need the typed confirmation."""

public_url = "https://app.cerniq.app"
db_password_env = "CERNIQ_PRODUCTION_DB_PASSWORD"
redis_password_env = "CERNIQ_PRODUCTION_REDIS_PASSWORD"
confirm_phrase = "DEPLOY PRODUCTION"
