"""CI workflows (seed 4.4): the app repository's GitHub Actions files, as text from team.yml
`ci` and group data. The PR checks are the seed's (lint, typecheck, test with postgres and
redis services, security scan) plus our documentation gate and review rules (a status); the
deploy workflows call our tasks: staging on develop, production on a version tag (with its typed
confirmation and the GitHub `production` environment's protection), nightly: backup, verify
and retention (`backup.create/verify/prune`), then `invoke verify`.

Pure builders: each returns the file's text; `ci.workflows` writes only what differs.
"""

from __future__ import annotations

from cerniq_ops import settings

WORKFLOWS_DIR = ".github/workflows"

PR_CHECKS = """\
# Written by `invoke ci.workflows` from cerniq-ops team.yml (seed 4.4); do not edit here.
name: PR Checks

on:
  pull_request:
    types: [opened, synchronize, reopened]
  pull_request_review:
    types: [submitted, dismissed]

permissions:
  contents: read

jobs:
  lint:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with:
          node-version: '<<node>>'
      - run: npm ci
      - run: npm run lint

  typecheck:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with:
          node-version: '<<node>>'
      - run: npm ci
      - run: npm run typecheck

  test:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    services:
      postgres:
        image: <<postgres>>
        env:
          POSTGRES_PASSWORD: test
        ports:
          - <<pg_port>>:5432
        options: >-
          --health-cmd pg_isready --health-interval 5s --health-timeout 5s --health-retries 10
      redis:
        image: <<redis>>
        ports:
          - <<redis_port>>:6379
    env:
      DATABASE_URL: postgres://postgres:test@localhost:<<pg_port>>/postgres
      REDIS_URL: redis://localhost:<<redis_port>>
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with:
          node-version: '<<node>>'
      - run: npm ci
      - run: npm run test:coverage
      - uses: codecov/codecov-action@v4

  security:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Run Snyk
        uses: snyk/actions/node@master
        env:
          SNYK_TOKEN: ${{ secrets.SNYK_TOKEN }}

  docs:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          path: app
          fetch-depth: 0
<<ops_steps>>
      - name: invoke docs.check
        working-directory: ops
        env:
          BASE_REF: ${{ github.base_ref }}
        run: invoke docs.check --repo ../app --base "origin/$BASE_REF"

  review-rules:
    runs-on: ubuntu-latest
    permissions:
      contents: read
      pull-requests: read
      statuses: write
    steps:
<<ops_steps>>
      - name: invoke review.check
        working-directory: ops
        env:
          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}
          PR_NUMBER: ${{ github.event.pull_request.number }}
          CERNIQ_OVERRIDE_GITHUB_REPO: ${{ github.repository }}
        run: invoke review.check "$PR_NUMBER" --status
"""

OPS_STEPS = """\
      - uses: actions/checkout@v4
        with:
          repository: <<ops_repo>>
          ref: <<ops_ref>>
          path: ops
      - uses: actions/setup-python@v5
        with:
          python-version: '<<python>>'
      - run: pip install -e ./ops"""

SSH_STEP = """\
      - name: SSH key of the deploy user
        env:
          DEPLOY_SSH_KEY: ${{ secrets.DEPLOY_SSH_KEY }}
          DEPLOY_KNOWN_HOSTS: ${{ secrets.DEPLOY_KNOWN_HOSTS }}
        run: |
          install -d -m 700 ~/.ssh
          printf '%s\\n' "$DEPLOY_SSH_KEY" > ~/.ssh/id_ed25519
          printf '%s\\n' "$DEPLOY_KNOWN_HOSTS" > ~/.ssh/known_hosts
          chmod 600 ~/.ssh/id_ed25519"""

DEPLOY_ENV = """\
        env:
          CERNIQ_SLACK_WEBHOOK: ${{ secrets.CERNIQ_SLACK_WEBHOOK }}
          CERNIQ_SLACK_WEBHOOK_DEPLOYMENTS: ${{ secrets.CERNIQ_SLACK_WEBHOOK_DEPLOYMENTS }}
          CERNIQ_SLACK_WEBHOOK_ALERTS: ${{ secrets.CERNIQ_SLACK_WEBHOOK_ALERTS }}
          <<db_env>>: ${{ secrets.<<db_env>> }}
          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}"""

DEPLOY_STAGING = """\
# Written by `invoke ci.workflows` from cerniq-ops team.yml (seed 4.4, 7.2); do not edit here.
name: Deploy staging

on:
  push:
    branches: [<<staging_branch>>]

concurrency:
  group: deploy-staging
  cancel-in-progress: false

permissions:
  contents: read
  actions: read

jobs:
  deploy:
    runs-on: ubuntu-latest
    environment: staging
    steps:
<<ops_steps>>
<<ssh_step>>
      - name: invoke deploy --env staging
        working-directory: ops
<<deploy_env_staging>>
        run: invoke deploy --env staging --lock-wait 600
"""

DEPLOY_PRODUCTION = """\
# Written by `invoke ci.workflows` from cerniq-ops team.yml (seed 4.4, 7.2); do not edit here.
# The tag is the decision; the `production` environment's required reviewers approve the run.
name: Deploy production

on:
  push:
    tags: ['<<production_tags>>']

concurrency:
  group: deploy-production
  cancel-in-progress: false

permissions:
  contents: read
  actions: read

jobs:
  deploy:
    runs-on: ubuntu-latest
    environment: production
    steps:
<<ops_steps>>
<<ssh_step>>
      - name: invoke deploy --env production
        working-directory: ops
<<deploy_env_production>>
          VERSION: ${{ github.ref_name }}
          CONFIRM: <<confirm>>
        run: invoke deploy --env production --version "$VERSION" --confirm "$CONFIRM"
"""

NIGHTLY_VERIFY = """\
# Written by `invoke ci.workflows` from cerniq-ops team.yml (seed 4.4); do not edit here.
name: Nightly verify

on:
  schedule:
    - cron: '<<cron>>'
  workflow_dispatch:

permissions:
  contents: read

jobs:
  verify:
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      matrix:
        env: [staging, production]
    steps:
<<ops_steps>>
<<ssh_step>>
      # the nightly backup, proven restorable, then retention: the backup tasks themselves
      # (manifest, row counts, test restore), each environment's leg given only its own secret
      - name: invoke backup.create / backup.verify / backup.prune --env ${{ matrix.env }}
        working-directory: ops
        env:
          CERNIQ_SLACK_WEBHOOK: ${{ secrets.CERNIQ_SLACK_WEBHOOK }}
          <<db_stg>>: ${{ matrix.env == 'staging' && secrets.<<db_stg>> || '' }}
          <<db_prd>>: ${{ matrix.env == 'production' && secrets.<<db_prd>> || '' }}
          ENV_NAME: ${{ matrix.env }}
        run: |
          invoke backup.create --env "$ENV_NAME" --label nightly
          invoke backup.verify --env "$ENV_NAME"
          invoke backup.prune --env "$ENV_NAME"
      - name: invoke verify --env ${{ matrix.env }}
        working-directory: ops
        env:
          CERNIQ_SLACK_WEBHOOK: ${{ secrets.CERNIQ_SLACK_WEBHOOK }}
          CERNIQ_SLACK_WEBHOOK_ALERTS: ${{ secrets.CERNIQ_SLACK_WEBHOOK_ALERTS }}
          ENV_NAME: ${{ matrix.env }}
        run: invoke verify --env "$ENV_NAME" --junit "verify-$ENV_NAME.xml"
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: verify-${{ matrix.env }}
          path: ops/verify-${{ matrix.env }}.xml
"""


def _group_value(env: str, name: str):
    values = settings._module_values(settings.PROJECT_DIR / "group_data" / "all.py")
    values.update(settings._module_values(settings.PROJECT_DIR / "group_data" / f"{env}.py"))
    return values.get(name)


def _fill(template: str, values: dict[str, str]) -> str:
    for _ in range(2):  # placeholders inside placeholders (ops steps inside a job)
        for key, value in values.items():
            template = template.replace(f"<<{key}>>", value)
    return template


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def values(t: dict) -> dict[str, str]:
    ci = t["ci"]
    deploy_env = {
        env: DEPLOY_ENV.replace("<<db_env>>", str(_group_value(env, "db_password_env")))
        for env in ("staging", "production")
    }
    return {
        "node": str(ci["node_version"]),
        "postgres": str(ci["postgres_image"]),
        "redis": str(ci["redis_image"]),
        "pg_port": str(_group_value("staging", "postgres_port")),
        "redis_port": str(_group_value("staging", "redis_port")),
        "ops_steps": OPS_STEPS,
        "ops_repo": str(ci["ops_repository"]),
        "ops_ref": str(ci["ops_ref"]),
        "python": str(ci["python_version"]),
        "ssh_step": SSH_STEP,
        "deploy_env_staging": deploy_env["staging"],
        "deploy_env_production": deploy_env["production"],
        "staging_branch": str(ci["staging_branch"]),
        "production_tags": str(ci["production_tags"]),
        "confirm": _quoted(str(_group_value("production", "confirm_phrase") or "")),
        "cron": str(ci["nightly_cron"]),
        "db_stg": str(_group_value("staging", "db_password_env")),
        "db_prd": str(_group_value("production", "db_password_env")),
    }


def repo_files(t: dict) -> dict[str, str]:
    """Relative path -> text of every workflow `ci.workflows` keeps in the app repo."""
    v = values(t)
    return {
        f"{WORKFLOWS_DIR}/pr-checks.yml": _fill(PR_CHECKS, v),
        f"{WORKFLOWS_DIR}/deploy-staging.yml": _fill(DEPLOY_STAGING, v),
        f"{WORKFLOWS_DIR}/deploy-production.yml": _fill(DEPLOY_PRODUCTION, v),
        f"{WORKFLOWS_DIR}/nightly-verify.yml": _fill(NIGHTLY_VERIFY, v),
    }
