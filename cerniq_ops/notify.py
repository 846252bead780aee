"""Slack notifications (incoming webhook): Block Kit with a text fallback, 429 Retry-After
honoured, and never a reason to fail a procedure: a failed post is reported, not raised.
The seed's deployment announcement template (13.2) is rendered here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

from cerniq_ops.output import redact_obj

MAX_ATTEMPTS = 3
MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class Fields:
    title: str
    fields: dict[str, str]
    ok: bool = True
    body: str = ""


def slack_payload(msg: Fields) -> dict:
    """Block Kit message plus `text` (the notification/fallback line)."""
    emoji = ":white_check_mark:" if msg.ok else ":x:"
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": msg.title[:150]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(msg.fields.items())[:10]
            ],
        },
    ]
    if msg.body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": msg.body[:2900]}})
    return redact_obj({"text": f"{emoji} {msg.title}", "blocks": blocks})


def deployment_announcement(
    version: str, env: str, time_utc: str, changes: list[str], notes: str = ""
) -> str:
    """The seed's Deployment Announcement Template (13.2), filled in."""
    change_lines = "\n".join(f"- {c}" for c in changes) or "- (no change list given)"
    return (
        f"**Deployment:** {version}\n**Environment:** {env.capitalize()}\n"
        f"**Time:** {time_utc}\n\n**Changes:**\n{change_lines}\n\n"
        f"**Notes:**\n{notes or 'None.'}\n\n**Rollback Plan:**\nContact @oncall if issues."
    )


@dataclass(frozen=True)
class Delivery:
    sent: bool
    detail: str


class _RateLimit(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler (it sleeps Retry-After, then retries), the wait capped at
    MAX_RETRY_AFTER: a notification never holds a procedure up for long."""

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        if response is not None:
            for name, values in response.headers.items():
                if name.lower() == "retry-after" and values:
                    capped = min(int(float(values[0])), int(MAX_RETRY_AFTER))
                    response.headers[name] = [str(capped)]
        super().prepare_for_next_attempt(
            state=state, request=request, response=response, error=error
        )


def post(webhook: str | None, payload: dict, timeout: float = 10.0) -> Delivery:
    """POST PAYLOAD to the webhook with slack-sdk's WebhookClient: 429 (Retry-After), 5xx and
    connection errors retried (MAX_ATTEMPTS in all); the outcome reported, never raised."""
    if not webhook:
        return Delivery(False, "no Slack webhook configured: skipped")
    retries = MAX_ATTEMPTS - 1
    client = WebhookClient(
        webhook,
        timeout=int(max(1, timeout)),
        retry_handlers=[
            _RateLimit(max_retry_count=retries),
            ServerErrorRetryHandler(max_retry_count=retries),
            ConnectionErrorRetryHandler(max_retry_count=retries),
        ],
    )
    try:
        r = client.send_dict(payload)
    except Exception as exc:  # urllib's errors after the retries: reported, not raised
        return Delivery(False, f"Slack unreachable ({type(exc).__name__})")
    if r.status_code == 200:
        return Delivery(True, "sent to Slack")
    return Delivery(False, f"Slack answered {r.status_code} {str(r.body)[:80]}")


# -- channels (seed 13.1): one webhook per channel, every message kind routed to its channel ---
@dataclass(frozen=True)
class Route:
    kind: str
    channel: str | None  # None: the kind has no route; the default webhook takes it
    webhook: str | None
    fallback: bool  # True when the channel's own webhook is unset and the default is used


def route(kind: str, default_webhook: str | None, team: dict | None = None) -> Route:
    """Where a message of KIND goes: team.yml `routes` names the channel, `channels` the variable
    holding its webhook; an unset variable (or an unrouted kind) falls back to DEFAULT_WEBHOOK."""
    import os

    from cerniq_ops import team as team_rules
    from cerniq_ops.errors import BadInput
    from cerniq_ops.output import register_secret

    try:
        t = team if team is not None else team_rules.load()
    except BadInput:  # unreadable team rules never stop a message: the default webhook takes it
        t = {}
    channel = t.get("routes", {}).get(kind)
    variable = t.get("channels", {}).get(channel) if channel else None
    own = os.environ.get(variable) if variable else None
    register_secret(own)
    if own:
        return Route(kind, channel, own, False)
    return Route(kind, channel, default_webhook, True)


def post_kind(kind: str, default_webhook: str | None, payload: dict, team: dict | None = None):
    """post() to KIND's channel; the Delivery's detail names the channel."""
    r = route(kind, default_webhook, team)
    d = post(r.webhook, payload)
    where = f"{r.channel or 'default channel'}{' via the default webhook' if r.fallback else ''}"
    return Delivery(d.sent, f"{d.detail} ({where})")
