"""config_diff: what `deploy --dry-run --diff` prints of a file it would change."""

import pytest

from cerniq_ops import config_diff

pytestmark = pytest.mark.unit

OLD_ENV = "CERNIQ_ENV=production\nCERNIQ_VERSION=v1.1.0\nDATABASE_URL=postgresql://u:pw1@db/x\n"
NEW_ENV = "CERNIQ_ENV=production\nCERNIQ_VERSION=v1.2.0\nREDIS_URL=redis://:pw2@db:6379/0\n"


def test_a_secret_file_shows_keys_never_values():
    assert config_diff.file_diff("/opt/cerniq/.env", OLD_ENV, NEW_ENV, secret=True) == [
        "/opt/cerniq/.env (secret: keys only)",
        "~ CERNIQ_VERSION=*** (value changed)",
        "- DATABASE_URL (removed)",
        "+ REDIS_URL=*** (added)",
    ]


def test_a_config_file_shows_a_unified_diff():
    old = "services:\n  api:\n    image: r/api:v1.1.0\n  web:\n    image: r/web:v1.1.0\n"
    new = old.replace("api:v1.1.0", "api:v1.2.0")
    assert config_diff.file_diff("/opt/cerniq/docker-compose.yml", old, new, secret=False) == [
        "--- /opt/cerniq/docker-compose.yml (on the host)",
        "+++ /opt/cerniq/docker-compose.yml (planned)",
        "@@ -2,3 +2,3 @@",
        "   api:",
        "-    image: r/api:v1.1.0",
        "+    image: r/api:v1.2.0",
        "   web:",
    ]


def test_a_new_file_diffs_against_nothing_and_an_unchanged_one_shows_nothing():
    assert config_diff.file_diff("/x.yml", None, "a: 1\n", secret=False) == [
        "--- /dev/null",
        "+++ /x.yml (planned)",
        "@@ -0,0 +1 @@",
        "+a: 1",
    ]
    assert config_diff.file_diff("/x.yml", "a: 1\n", "a: 1\n", secret=False) == []
    assert config_diff.file_diff("/.env", None, "A=1\n", secret=True) == [
        "/.env (secret: keys only)",
        "+ A=*** (added)",
    ]
