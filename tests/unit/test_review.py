"""Review rules (seed 4.1, 4.2, 15.1) as pure functions: CODEOWNERS text, path globs, a PR's
verdict, business hours and SLA levels, with the clock as an argument."""

from datetime import UTC, datetime, timedelta

import pytest

from cerniq_ops import business, review, team

pytestmark = pytest.mark.unit
T = team.load()

CODEOWNERS = """\
# Written by `invoke review.codeowners` from cerniq-ops team.yml (seed 4.1); do not edit:
# change team.yml and re-run. The last matching pattern takes precedence.

# Paths -> teams
packages/api/** @cerniq/backend-team
packages/web/** @cerniq/frontend-team
packages/workers/** @cerniq/backend-team
packages/shared/** @cerniq/backend-team @cerniq/frontend-team

# Critical paths -> required reviewers
packages/api/src/services/** @cerniq/backend-team @ana-cerniq
**/security/** @bogdan-cerniq
**/migrations/** @carmen-cerniq
"""


def test_codeowners_is_the_assignment_rules_in_order():
    assert review.codeowners_text(T) == CODEOWNERS


def test_pr_template_is_the_seeds():
    text = review.pr_template_text(T)
    assert text.startswith("## Description\nBrief description of changes.\n")
    assert text.endswith("- [ ] Changelog updated\n")


@pytest.mark.parametrize(
    "pattern,path,hit",
    [
        ("**/migrations/**", "packages/api/migrations/003_leads.sql", True),
        ("**/migrations/**", "migrations/001.sql", True),
        ("**/migrations/**", "packages/api/src/migrations.js", False),
        ("packages/api/**", "packages/api/src/a.js", True),
        ("packages/api/**", "packages/apiary/x.js", False),
        ("packages/api/src/services/**", "packages/api/src/services/lead/score.ts", True),
        ("**/security/**", "packages/web/src/security/csp.ts", True),
        ("packages/*/README.md", "packages/api/README.md", True),
        ("packages/*/README.md", "packages/api/x/README.md", False),
    ],
)
def test_globs_follow_codeowners_rules(pattern, path, hit):
    assert review.matches(pattern, path) is hit


def rv(login, state, at="2026-11-30T10:00:00Z", i=1):
    return {"id": i, "user": {"login": login}, "state": state, "submitted_at": at}


def test_migration_without_dba_names_what_is_missing():
    v = review.evaluate(
        T,
        ["packages/api/migrations/003_leads.sql", "packages/api/src/leads.js"],
        [rv("bogdan-cerniq", "APPROVED"), rv("dan-cerniq", "APPROVED")],
        author="elena-cerniq",
    )
    assert not v.ok
    assert v.missing == [
        "packages/api/migrations/003_leads.sql needs an approval from @dba (carmen-cerniq)"
    ]


def test_two_approvals_with_the_dba_pass():
    v = review.evaluate(
        T,
        ["packages/api/migrations/003_leads.sql"],
        [rv("carmen-cerniq", "APPROVED"), rv("dan-cerniq", "APPROVED")],
        author="elena-cerniq",
    )
    assert v.ok and v.approved_by == ["carmen-cerniq", "dan-cerniq"]


def test_author_and_comments_do_not_count_and_a_later_change_request_wins():
    v = review.evaluate(
        T,
        ["packages/web/src/app.js"],
        [
            rv("elena-cerniq", "APPROVED", i=1),  # the author
            rv("dan-cerniq", "APPROVED", "2026-11-30T10:00:00Z", 2),
            rv("dan-cerniq", "COMMENTED", "2026-11-30T11:00:00Z", 3),
            rv("ana-cerniq", "APPROVED", "2026-11-30T10:00:00Z", 4),
            rv("ana-cerniq", "CHANGES_REQUESTED", "2026-11-30T12:00:00Z", 5),
        ],
        author="elena-cerniq",
    )
    assert v.missing == [
        "2 approvals needed, 1 given (dan-cerniq)",
        "changes requested by ana-cerniq",
    ]


# -- business time ----------------------------------------------------------------------------
def test_business_hours_skip_nights_weekends_and_public_holidays():
    # Fri 2026-11-27 16:00 local (EET, UTC+2) -> Tue 2026-12-02 09:00 local: Fri 1.5 h, Sat/Sun
    # off, Mon 30 Nov (Saint Andrew) and Tue 1 Dec (National Day) are Romanian public holidays,
    # Wed 2 Dec 08:00-09:00 = 1 h
    start = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    end = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    assert business.elapsed(T, start, end) == timedelta(hours=2.5)


def test_a_business_day_is_the_seeds_working_day():
    assert business.day_hours(T) == 9.5
    assert team.duration("1 business day", 9.5) == timedelta(hours=9.5)


# -- nudges -----------------------------------------------------------------------------------
def pull(n=7, created="2026-11-26T07:00:00Z", author="dan-cerniq", **kw):
    return {
        "number": n,
        "title": "Lead scoring",
        "state": "open",
        "draft": False,
        "user": {"login": author},
        "created_at": created,
        "requested_reviewers": [{"login": "ana-cerniq"}],
        "html_url": f"https://github.com/x/y/pull/{n}",
        **kw,
    }


def at(hour_utc, day=26):
    return datetime(2026, 11, day, hour_utc, 0, tzinfo=UTC)


def test_a_pr_waiting_5_business_hours_gets_the_4h_reminder_once():
    # Thu 26 Nov 09:00 local (07:00 UTC) + 5 h = 14:00 local
    due = review.nudges(T, "x/y", [(pull(), [])], at(12), {})
    assert [(n.level.label, n.covered) for n in due] == [("4 hours", ["4 hours"])]
    assert due[0].text.startswith('PR #7 "Lead scoring" waits 5 business h for a first review;')
    assert "Reminder in Slack: @ana" in due[0].text
    state = review.mark_posted({}, due[0])
    assert review.nudges(T, "x/y", [(pull(), [])], at(12), state) == []


def test_escalation_to_the_tech_lead_after_8_business_hours_and_manager_after_24():
    # 26 Nov 09:00 local -> 27 Nov 09:30 local: 8.5 + 1.5 = 10 business hours
    due = review.nudges(T, "x/y", [(pull(), [])], datetime(2026, 11, 27, 7, 30, tzinfo=UTC), {})
    assert due[0].level.label == "8 hours" and due[0].covered == ["4 hours", "8 hours"]
    assert "past the 1 business day maximum" in due[0].text and "@ana" in due[0].text
    late = review.nudges(
        T,
        "x/y",
        [(pull(), [])],
        datetime(2026, 12, 4, 7, 0, tzinfo=UTC),
        {"x/y#7": ["4 hours", "8 hours"]},
    )
    assert due and late[0].level.label == "24 hours" and "@elena" in late[0].text


def test_reviewed_draft_or_fresh_prs_get_no_nudge():
    assert review.nudges(T, "x/y", [(pull(), [rv("ana-cerniq", "COMMENTED")])], at(16), {}) == []
    assert review.nudges(T, "x/y", [(pull(draft=True), [])], at(16), {}) == []
    assert review.nudges(T, "x/y", [(pull(), [])], at(10), {}) == []  # 3 h: below 4 h


def test_a_push_after_requested_changes_waits_for_a_follow_up_from_that_reviewer():
    p = pull(head={"sha": "b" * 40})
    reviews = [
        {**rv("ana-cerniq", "CHANGES_REQUESTED", "2026-11-26T08:00:00Z"), "commit_id": "a" * 40}
    ]
    assert review.waiting_for_follow_up(p, reviews) == ["ana-cerniq"]
    pushed = {7: "2026-11-26T09:00:00Z"}  # 11:00 local; 3 business hours later is 14:00
    due = review.nudges(T, "x/y", [(p, reviews)], at(12), {}, pushed)
    assert [(n.key, n.level.label) for n in due] == [(f"x/y#7@{'b' * 12}", "2 hours")]
    assert due[0].text.startswith('PR #7 "Lead scoring" waits 3 business h for a follow-up review;')
    assert "Follow-up reminder in Slack: @ana" in due[0].text
    # 5 business hours: past the 4 h maximum, the tech lead is told; once
    late = review.nudges(T, "x/y", [(p, reviews)], at(14), {}, pushed)
    assert late[0].level.label == "4 hours" and "(past the 4 hours maximum)" in late[0].text
    assert (
        review.nudges(T, "x/y", [(p, reviews)], at(14), review.mark_posted({}, late[0]), pushed)
        == []
    )


def test_a_review_of_the_head_commit_or_an_approval_needs_no_follow_up():
    p = pull(head={"sha": "b" * 40})
    on_head = [{**rv("ana-cerniq", "CHANGES_REQUESTED"), "commit_id": "b" * 40}]
    approved = [{**rv("ana-cerniq", "APPROVED"), "commit_id": "a" * 40}]
    assert review.waiting_for_follow_up(p, on_head) == []
    assert review.waiting_for_follow_up(p, approved) == []


def test_a_broken_team_file_is_one_bad_input_line(tmp_path):
    from cerniq_ops.errors import BadInput

    bad = tmp_path / "team.yml"
    bad.write_text("people: [\n")
    with pytest.raises(BadInput, match=r"team rules file .* line \d+ is not valid YAML"):
        team.load(bad)
    bad.write_text("people: {}\nroles: {}\n")
    with pytest.raises(BadInput, match="lacks section.*review, business, oncall"):
        team.load(bad)
    with pytest.raises(BadInput, match="does not exist"):
        team.load(tmp_path / "none.yml")
