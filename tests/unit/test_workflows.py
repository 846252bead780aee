"""CI workflows (seed 4.4) as pure text: the seed's PR checks plus our review status, the deploy
workflows calling our tasks, nightly verify. Each file parses as YAML with the jobs, triggers
and commands the seed asks for."""

import pytest
import yaml

from cerniq_ops import team, workflows

pytestmark = pytest.mark.unit
FILES = workflows.repo_files(team.load())


def doc(name):
    data = yaml.safe_load(FILES[f".github/workflows/{name}"])
    data["on"] = data.pop(True)  # YAML 1.1 reads the key `on` as true
    return data


def runs(job):
    return [s["run"] for s in job["steps"] if "run" in s]


def test_the_four_workflows_and_nothing_unfilled():
    assert sorted(FILES) == [
        ".github/workflows/deploy-production.yml",
        ".github/workflows/deploy-staging.yml",
        ".github/workflows/nightly-verify.yml",
        ".github/workflows/pr-checks.yml",
    ]
    assert not any("<<" in text for text in FILES.values())


def test_pr_checks_are_the_seeds_jobs_with_services_and_our_review_status():
    pr = doc("pr-checks.yml")
    assert pr["on"]["pull_request"]["types"] == ["opened", "synchronize", "reopened"]
    assert list(pr["jobs"]) == ["lint", "typecheck", "test", "security", "docs", "review-rules"]
    assert (
        runs(pr["jobs"]["docs"])[-1] == 'invoke docs.check --repo ../app --base "origin/$BASE_REF"'
    )

    test = pr["jobs"]["test"]
    assert test["services"]["postgres"]["image"] == "postgres:18"
    assert test["services"]["postgres"]["ports"] == ["64032:5432"]
    assert test["services"]["redis"]["ports"] == ["64039:6379"]
    assert runs(test) == ["npm ci", "npm run test:coverage"]
    assert runs(pr["jobs"]["lint"])[-1] == "npm run lint"
    assert pr["jobs"]["security"]["steps"][-1]["uses"] == "snyk/actions/node@master"
    review = pr["jobs"]["review-rules"]
    assert review["permissions"]["statuses"] == "write"
    assert runs(review)[-1] == 'invoke review.check "$PR_NUMBER" --status'


def test_deploys_call_our_tasks_staging_on_develop_production_on_a_tag_with_confirmation():
    staging, production = doc("deploy-staging.yml"), doc("deploy-production.yml")
    assert staging["on"] == {"push": {"branches": ["develop"]}}
    assert runs(staging["jobs"]["deploy"])[-1] == "invoke deploy --env staging --lock-wait 600"
    assert production["on"] == {"push": {"tags": ["v*"]}}
    job = production["jobs"]["deploy"]
    assert job["environment"] == "production"
    last = job["steps"][-1]
    assert last["run"] == (
        'invoke deploy --env production --version "$VERSION" --confirm "$CONFIRM"'
    )
    assert last["env"]["CONFIRM"] == "DEPLOY PRODUCTION"
    assert last["env"]["VERSION"] == "${{ github.ref_name }}"
    assert "CERNIQ_PRODUCTION_DB_PASSWORD" in last["env"]


def test_nightly_verify_runs_on_a_schedule_for_both_environments():
    nightly = doc("nightly-verify.yml")
    assert nightly["on"]["schedule"] == [{"cron": "0 3 * * *"}]
    job = nightly["jobs"]["verify"]
    assert job["strategy"]["matrix"]["env"] == ["staging", "production"]
    assert 'invoke verify --env "$ENV_NAME" --junit "verify-$ENV_NAME.xml"' in runs(job)


def test_nightly_backs_up_proves_and_prunes_before_verify_each_leg_with_its_own_secret():
    job = doc("nightly-verify.yml")["jobs"]["verify"]
    backup = next(st for st in job["steps"] if "backup.create" in st.get("run", ""))
    assert backup["run"].splitlines() == [
        'invoke backup.create --env "$ENV_NAME" --label nightly',
        'invoke backup.verify --env "$ENV_NAME"',
        'invoke backup.prune --env "$ENV_NAME"',
    ]
    assert backup["env"]["CERNIQ_STAGING_DB_PASSWORD"] == (
        "${{ matrix.env == 'staging' && secrets.CERNIQ_STAGING_DB_PASSWORD || '' }}"
    )
    assert backup["env"]["CERNIQ_PRODUCTION_DB_PASSWORD"] == (
        "${{ matrix.env == 'production' && secrets.CERNIQ_PRODUCTION_DB_PASSWORD || '' }}"
    )
    names = [st.get("name", "") for st in job["steps"]]
    assert names.index(backup["name"]) < next(i for i, n in enumerate(names) if "verify --env" in n)
