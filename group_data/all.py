"""Defaults for every environment (values from the procedures document, seed sections 7-11).

Plain module-level names, as pyinfra group data. Secrets are never stored here: a `*_env`
setting names the environment variable that holds the secret.
"""

# Where the app lives on each host (seed 7.2/7.3: /opt/cerniq, /backup)
app_root = "/opt/cerniq"
backup_dir = "/backup"

# Ports (seed 7.3, 4.4): health entrypoint, blue and green colors, PostgreSQL, Redis
health_port = 64000
blue_port = 64001
green_port = 64002
postgres_port = 64032
redis_port = 64039

# Health gates (seed 7.2: 5 x 5 s after deploy; 7.3: 30 x 2 s for the idle color)
health_retries = 5
health_interval = 5.0
bluegreen_health_retries = 30
bluegreen_health_interval = 2.0

# Disk (seed 7.2 warns above 80%); deploys refuse above the hard limit
disk_warn_percent = 80
disk_max_percent = 95

# Images: <registry>/<image_prefix>/<service>:<version>
registry = "registry.cerniq.app"
image_prefix = "cerniq"
services = ["api", "web", "workers"]
compose_command = ["docker", "compose"]
compose_project = "cerniq"
registry_scheme = "https"
traefik_version = "v3.7.15"  # <registry>/<image_prefix>/traefik:<this>, mirrored there
traefik_access_log = True  # Traefik's access log on its stdout: `invoke logs --service traefik`
# a host's Traefik recreated (its configuration changed): how long its /health answers 503
# before, and how long the next host waits after: the balancer in front must take the host out
# and back (HAProxy's `fall 2` / `rise 2` x `inter 1s`)
edge_settle_seconds = 3.0
api_replicas = 1  # per app host (the seed runs one)

# Database (seed 9.2 uses user c3rn1q, database cerniq)
db_name = "cerniq"
db_user = "c3rn1q"
db_password_env = "CERNIQ_DB_PASSWORD"
# Redis (seed 4.4): redis-server on the environment's db host at redis_port, bound to the host's
# address, password required (REDIS_URL in the app's .env; docs/runbooks/hosts-and-access.md)
redis_password_env = "CERNIQ_REDIS_PASSWORD"
migrations_dir = "migrations"  # relative to the project; the app's migrations
migration_backup = "db-host"  # pre-migration backup: db-host (backup module) or local pg_dump
migration_lock_timeout = "5s"
migration_statement_timeout = "15min"

# Rollback thresholds (seed 9.1)
rollback_error_rate = 0.05
rollback_latency_factor = 3.0
rollback_latency_floor = 0.05  # s: mean latencies below this are noise, never a trigger

# Notifications and CI (seed 7.2): secrets come from the environment
slack_webhook_env = "CERNIQ_SLACK_WEBHOOK"
github_repo = "cerniq/cerniq-app"
github_api = "https://api.github.com"
github_token_env = "GITHUB_TOKEN"

# Typed confirmation a change to this environment needs (None: none)
confirm_phrase = None

# How we reach hosts: as deploy (never root), host keys always checked against this file
# (record keys with `invoke doctor --trust`; docs/runbooks/hosts-and-access.md)
ssh_user = "deploy"
ssh_port = 22
ssh_known_hosts_file = "~/.ssh/known_hosts"

# `invoke setup` (deploys/, docs/runbooks/setup.md): bare hosts to what deploy needs. It connects
# as setup_user (root, or a user with passwordless sudo: then every operation runs with sudo),
# creates ssh_user with the public key below, and installs these packages. An empty setup_user
# turns setup off for an environment whose hosts other tooling provisions.
setup_user = "root"
deploy_public_key_file = "~/.ssh/id_ed25519.pub"  # the key procedures log in to ssh_user with
docker_packages = ["docker.io", "docker-compose", "curl"]  # docker engine, compose, curl (doctor)
db_clients = []  # CIDRs beyond the app hosts that may reach the database (operators, CI runners)

# Backups (cerniq_ops/backup/, docs/runbooks/backups.md): pg_dump custom format on the db host
# as the db OS user over the local socket, proven by test restores into scratch databases.
backup_keep_last = 7  # prune keeps the newest N ...
backup_keep_days = 14.0  # ... and everything younger than this; never the newest verified one
backup_scratch_prefix = "cerniq_scratch_"  # test-restore and restore databases start with this
backup_max_verified_age_hours = 26.0  # audits: a verified backup's data must be this recent
pg_bin_dir = "/usr/lib/postgresql/15/bin"  # pg_dump, pg_restore, psql on the db host
db_socket_dir = "/run/postgresql"  # the server's unix socket directory on the db host
db_os_user = "postgres"  # OS account that owns the cluster (runuser as root, else sudo -n)
backup_compress_level = 1  # pg_dump --compress (zlib): 1 measured 5x faster than 6, +6% size
backup_verify_restore = False  # deploys check backups (sha256, pg_restore --list); True: + restore
restore_keep_previous_hours = 24.0  # restore keeps the replaced database this long (0: drop now)

# Audits (`invoke verify`, docs/runbooks/verify.md): a deploy lock older than this is stale
# (a run died holding it); backups use backup_max_verified_age_hours above.
deploy_lock_max_age_minutes = 60.0

# Blue-green (cerniq_ops/bluegreen.py, docs/runbooks/bluegreen.md); thresholds are the rollback
# ones above (seed 9.1: error rate > 5%, latency > 3x the old color's)
bluegreen_analysis_seconds = 60.0  # after a full switch, watch the new color this long
bluegreen_scale_down_delay = 600.0  # stop-idle keeps the old color this long after a switch
bluegreen_canary_steps = [10, 50, 100]  # percent of traffic to the new color, step by step
bluegreen_canary_pause = 60.0  # analysis window between canary steps
bluegreen_min_requests = 20  # fewer requests than this in a window cannot fail an analysis
bluegreen_latency_floor = 0.05  # s: a mean below this never fails the 3x latency check

# Hooks (cerniq_ops/hooks.py): executables named pre-deploy, post-deploy, pre-switch,
# post-switch, pre-rollback, post-rollback, on-failure, run on this machine around procedures
hooks_dir = "hooks"  # relative to the project unless absolute

# Maintenance mode (cerniq_ops/maintenance.py): the page server's image under
# <registry>/<image_prefix>/ (a mirror of Docker Hub's busybox: its httpd serves the page)
maintenance_image = "busybox:1.36"

# Prune (cerniq_ops/prune.py): `invoke prune` and the end of every deploy keep the newest N app
# versions' images on each app host (plus current and previous: a rollback needs them)
prune_retain = 3
