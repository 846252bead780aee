"""The team's rules as data: team.yml at the project root (seed 4, 5.2, 12, 13.1, 14, 15.1).

One loader for every team procedure (review, on-call, test runs, CI workflows, docs gate,
channels). CERNIQ_TEAM_FILE points at another file. The GitHub API, repository, token variable
and default Slack webhook variable stay in group data (group_data/all.py), read here without an
environment: the team's procedures are not tied to staging or production.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from cerniq_ops import settings
from cerniq_ops.errors import BadInput
from cerniq_ops.output import register_secret

TEAM_FILE = settings.PROJECT_DIR / "team.yml"
SECTIONS = (
    "people",
    "roles",
    "review",
    "business",
    "oncall",
    "channels",
    "routes",
    "tests",
    "ci",
    "docs",
    "pr_template",
)


def team_file() -> Path:
    return Path(os.environ.get("CERNIQ_TEAM_FILE") or TEAM_FILE).resolve()


def load(path: Path | None = None) -> dict[str, Any]:
    """team.yml as a dict; BadInput (one line, exit 2) when missing or malformed."""
    path = path or team_file()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"team rules file {path} does not exist (CERNIQ_TEAM_FILE)") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise BadInput(f"team rules file {path}{line} is not valid YAML") from None
    if not isinstance(data, dict):
        raise BadInput(f"team rules file {path} must be a mapping of sections")
    missing = [s for s in SECTIONS if s not in data]
    if missing:
        raise BadInput(f"team rules file {path} lacks section(s): {', '.join(missing)}")
    return data


def project_path(text: str) -> Path:
    """A path from team.yml: relative ones are relative to the project."""
    p = Path(text)
    return p if p.is_absolute() else settings.PROJECT_DIR / p


@dataclass(frozen=True)
class Outside:
    """What the team procedures need from group data: GitHub and the default Slack webhook."""

    github_api: str
    github_repo: str
    github_token_env: str
    slack_webhook_env: str

    def token(self) -> str:
        value = os.environ.get(self.github_token_env) or None
        if not value:
            raise BadInput(f"missing secret: set the environment variable {self.github_token_env}")
        register_secret(value)
        return value

    def default_webhook(self) -> str | None:
        value = os.environ.get(self.slack_webhook_env) or None
        register_secret(value)
        return value


def outside() -> Outside:
    values = settings._module_values(settings.PROJECT_DIR / "group_data" / "all.py")
    values.update(settings._overrides(values, set(values)))
    return Outside(
        values["github_api"],
        values["github_repo"],
        values["github_token_env"],
        values["slack_webhook_env"],
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(business\s+)?(minute|hour|day|week)s?\s*$")


def duration(text: str, business_day_hours: float) -> timedelta:
    """'4 hours', '1 business day' (= BUSINESS_DAY_HOURS), '1 week' -> a timedelta."""
    m = _DURATION.match(str(text).lower())
    if not m:
        raise BadInput(f"cannot read the duration {text!r} in team.yml (e.g. '4 hours')")
    n, business, unit = float(m.group(1)), bool(m.group(2)), m.group(3)
    if business and unit == "day":
        return timedelta(hours=n * business_day_hours)
    return timedelta(**{f"{unit}s": n})


def members(team: dict[str, Any], handle: str) -> list[str]:
    """'@dba' -> the people in role dba; '@ana' -> ['ana']; BadInput for an unknown handle."""
    name = handle.lstrip("@")
    if name in team["roles"]:
        return list(team["roles"][name])
    if name in team["people"]:
        return [name]
    raise BadInput(f"unknown reviewer {handle!r} in team.yml: not a role nor a person")


def github_login(team: dict[str, Any], person: str) -> str:
    return str(team["people"].get(person, {}).get("github", person))
