"""The Cerniq app's repository in miniature, for the testbed (`invoke testbed.up` builds a bare
origin and a checkout of it, testbed/app_ci.py playing its CI) and for the tests (in a
temporary folder): package.json whose test commands really run (node's test runner) and write
real coverage (lcov.info from node, converted to istanbul's coverage-summary.json by a script
of the app), CHANGELOG.md, docs/ with relative links, packages/api/{src,migrations},
conventional commits on main and develop."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

PACKAGE_JSON = {
    "name": "cerniq-app-sample",
    "version": "1.0.0",
    "private": True,
    "scripts": {
        "test:unit": "node --test test/unit/",
        "test:integration": "node --test test/integration/",
        "test:e2e": "node --test test/e2e/",
        "test:coverage": "mkdir -p coverage && node --test --experimental-test-coverage"
        " --test-reporter=lcov --test-reporter-destination=coverage/lcov.info"
        " --test-reporter=dot --test-reporter-destination=stdout"
        " test/unit/ test/integration/ && node scripts/coverage-summary.js",
        "lint": "node --check packages/api/src/math.js",
        "typecheck": "node --check packages/api/src/math.js",
    },
}

# lcov.info -> istanbul json-summary (coverage/coverage-summary.json), test files left out.
COVERAGE_SUMMARY_JS = r"""
const fs = require('fs');
const text = fs.readFileSync('coverage/lcov.info', 'utf8');
const keys = { lines: ['LF', 'LH'], branches: ['BRF', 'BRH'], functions: ['FNF', 'FNH'] };
const out = {}; const total = {};
for (const m of ['lines', 'statements', 'functions', 'branches']) {
  total[m] = { total: 0, covered: 0 };
}
for (const rec of text.split('end_of_record')) {
  const sf = (rec.match(/^SF:(.*)$/m) || [])[1];
  if (!sf || sf.startsWith('test/') || sf.includes('/test/')) continue;
  const file = {};
  for (const [m, [f, h]] of Object.entries(keys)) {
    const t = +((rec.match(new RegExp('^' + f + ':(\\d+)', 'm')) || [0, 0])[1]);
    const c = +((rec.match(new RegExp('^' + h + ':(\\d+)', 'm')) || [0, 0])[1]);
    file[m] = { total: t, covered: c };
  }
  file.statements = { ...file.lines };
  for (const m of Object.keys(file)) {
    total[m].total += file[m].total; total[m].covered += file[m].covered;
    file[m].skipped = 0;
    file[m].pct = file[m].total ? +(100 * file[m].covered / file[m].total).toFixed(2) : 100;
  }
  out[sf] = file;
}
for (const m of Object.keys(total)) {
  total[m].skipped = 0;
  total[m].pct = total[m].total ? +(100 * total[m].covered / total[m].total).toFixed(2) : 100;
}
fs.writeFileSync('coverage/coverage-summary.json', JSON.stringify({ total, ...out }, null, 2));
"""

MATH_JS = """function add(a, b) {
  return a + b;
}

function sign(x) {
  if (x < 0) {
    return -1;
  }
  return 1;
}

module.exports = { add, sign };
"""

# Loaded by the tests but barely exercised: drags coverage under the thresholds.
UNTESTED_JS = """function touched() {
  return 1;
}

function classify(n) {
  if (n > 100) {
    return 'huge';
  }
  if (n > 10) {
    return 'big';
  }
  if (n > 1) {
    return 'small';
  }
  return 'tiny';
}

function describe(n) {
  const kind = classify(n);
  const label = kind.toUpperCase();
  return label + ':' + n;
}

module.exports = { touched, classify, describe };
"""

UNIT_TEST = """const test = require('node:test');
const assert = require('node:assert');
const m = require('../../packages/api/src/math.js');
test('add', () => { assert.strictEqual(m.add(1, 2), {expected}); });
test('sign', () => { assert.strictEqual(m.sign(-3), -1); assert.strictEqual(m.sign(3), 1); });
"""

UNTESTED_TEST = """const test = require('node:test');
const assert = require('node:assert');
const u = require('../../packages/api/src/untested.js');
test('touched', () => { assert.strictEqual(u.touched(), 1); });
"""

INTEGRATION_TEST = """const test = require('node:test');
const assert = require('node:assert');
const m = require('../../packages/api/src/math.js');
test('add then sign', () => { assert.strictEqual(m.sign(m.add(-5, 2)), -1); });
"""

E2E_TEST = """const test = require('node:test');
const assert = require('node:assert');
test('e2e {name}', () => { assert.ok({ok}); });
"""

DOCS = {
    "docs/index.md": "# Cerniq app\n\n- [API runbook](runbooks/api.md)\n"
    "- [API configuration](configuration/api.md#env)\n- [Changelog](../CHANGELOG.md)\n"
    "- [Cerniq](https://cerniq.app)\n",
    "docs/runbooks/api.md": "# API runbook\n\nSee [configuration](../configuration/api.md).\n",
    "docs/configuration/api.md": "# API configuration\n\n## env\n\nDATABASE_URL.\n",
    "packages/api/README.md": "# api\n\nThe Cerniq API.\n",
}


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_sample_app(
    where: Path, *, low_coverage: bool = False, failing_unit: bool = False, e2e_ok: bool = True
) -> Path:
    """Build the sample app at WHERE/app: branch main (initial commit), develop checked out."""
    root = where / "app"
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@cerniq.app")
    git(root, "config", "user.name", "Sample Dev")
    files = {
        "package.json": json.dumps(PACKAGE_JSON, indent=2) + "\n",
        "scripts/coverage-summary.js": COVERAGE_SUMMARY_JS,
        "packages/api/src/math.js": MATH_JS,
        "packages/api/migrations/001_init.sql": "CREATE TABLE leads (id bigint PRIMARY KEY);\n",
        "test/unit/math.test.js": UNIT_TEST.replace("{expected}", "4" if failing_unit else "3"),
        "test/integration/flow.test.js": INTEGRATION_TEST,
        "test/e2e/smoke.test.js": E2E_TEST.replace("{name}", "smoke").replace(
            "{ok}", "true" if e2e_ok else "false"
        ),
        "CHANGELOG.md": "# Changelog\n\n## Unreleased\n\n## 1.0.0\n- First release.\n",
        ".gitignore": "coverage/\nnode_modules/\n",
        **DOCS,
    }
    if low_coverage:
        files["packages/api/src/untested.js"] = UNTESTED_JS
        files["test/unit/untested.test.js"] = UNTESTED_TEST
    write(root, files)
    commit(root, "chore: initial sample app")
    git(root, "checkout", "-q", "-b", "develop")
    return root


PACKAGE_LOCK = {
    "name": "cerniq-app-sample",
    "version": "1.0.0",
    "lockfileVersion": 3,
    "requires": True,
    "packages": {"": {"name": "cerniq-app-sample", "version": "1.0.0"}},
}

# Conventional commits on develop since v1.0.0: what release.start's CHANGELOG section lists.
DEVELOP_COMMITS = (
    ("packages/api/src/score.js", "feat(api): lead scoring (#12)", ""),
    ("packages/api/src/email.js", "fix: null emails no longer crash the import (#13)", ""),
    ("docs/scoring.md", "docs: scoring guide", ""),
    (
        "packages/api/src/v1.js",
        "refactor(api)!: drop the v1 endpoints (#14)",
        "BREAKING CHANGE: /v1 is gone; clients use /v2",
    ),
)


def make_released_app(where: Path, *, commits=DEVELOP_COMMITS) -> tuple[Path, Path]:
    """A bare `origin` (WHERE/origin.git) and a checkout (WHERE/app) as the app has them after
    its first release: main tagged v1.0.0 (annotated), develop ahead of it by COMMITS, both
    pushed, develop checked out; package.json and package-lock.json at 1.0.0."""
    origin = where / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    root = make_sample_app(where)
    write(root, {"package-lock.json": json.dumps(PACKAGE_LOCK, indent=2) + "\n"})
    commit(root, "chore: lock file")
    git(root, "checkout", "-q", "main")
    git(root, "merge", "-q", "--ff-only", "develop")
    git(root, "tag", "-a", "v1.0.0", "-m", "Release v1.0.0")
    git(root, "checkout", "-q", "develop")
    for path, subject, body in commits:
        write(root, {path: f"// {subject}\n"})
        commit(root, f"{subject}\n\n{body}" if body else subject)
    git(root, "remote", "add", "origin", str(origin))
    git(root, "push", "-q", "origin", "main", "develop", "--tags")
    git(root, "branch", "-q", "--set-upstream-to", "origin/develop", "develop")
    return origin, root


def refs(origin: Path) -> str:
    return git(origin, "for-each-ref", "--format=%(objectname) %(refname)")
