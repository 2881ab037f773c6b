"""The one way to start a bot.

``ENV=production`` → Pipecat Cloud's public start endpoint; anything else →
Pipecat's development runner (``python bot.py``) at ``LOCAL_SERVER_URL``. The
room and token travel inside ``body`` (``createDailyRoom: false``), because the
room was made server-side.

A start is retried only when it certainly did not start a bot: a second start
rings the patient twice. So the failure classes are: connection refused, DNS,
connect timeout, 429 and 503 → ``TransientError``; a timeout or disconnect
after the request was sent, 502, 504 → ``AmbiguousStartError``; the rest →
``PermanentError`` (missing credentials → ``MissingCredentialsError``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote

import aiohttp
from django.conf import settings

from .agent_request import AgentRequest
from .errors import AmbiguousStartError, MissingCredentialsError, PermanentError, TransientError, missing_setting

logger = logging.getLogger(__name__)

def is_production() -> bool:
    """Pipecat Cloud and its checks (read at call time: tests switch ENV)."""
    return (getattr(settings, "ENV", "development") or "development").lower() == "production"


def check_start_config() -> list[str]:
    """What this deployment lacks to start a bot, as sentences (empty = ready).

    Services call it before placing a call so that a person sees why at once.
    """
    problems = []
    if not getattr(settings, "DAILY_API_KEY", ""):
        problems.append(missing_setting("DAILY_API_KEY"))
    mode = (getattr(settings, "DAILY_MEETING_TOKEN_MODE", "local") or "local").lower()
    if mode not in ("local", "rest"):
        problems.append(f"DAILY_MEETING_TOKEN_MODE is {mode!r}: it must be 'local' or 'rest'.")
    if is_production():
        for variable in ("PIPECAT_API_KEY", "PIPECAT_AGENT_NAME"):
            if not getattr(settings, variable, ""):
                problems.append(missing_setting(variable))
    return problems


def _target() -> tuple[str, dict[str, str], str]:
    """(url, headers, label) of the start endpoint for this deployment."""
    if is_production():
        key = getattr(settings, "PIPECAT_API_KEY", "") or ""
        agent = getattr(settings, "PIPECAT_AGENT_NAME", "") or ""
        if not key:
            raise MissingCredentialsError("PIPECAT_API_KEY")
        if not agent:
            raise MissingCredentialsError("PIPECAT_AGENT_NAME")
        base = settings.PIPECAT_API_URL.rstrip("/")  # default: myrobot/settings.py
        url = f"{base}/v1/public/{quote(agent, safe='')}/start"
        return url, {"Authorization": f"Bearer {key}"}, f"Pipecat Cloud agent '{agent}'"
    base = settings.LOCAL_SERVER_URL.rstrip("/")
    return f"{base}/start", {}, f"the local bot runner at {base}"


def start_payload(agent_request: AgentRequest) -> dict[str, Any]:
    """The JSON sent to either target.

    The local runner also gets ``transport: "daily"``: without it (and
    without ``-t daily``) Pipecat's runner treats the request as WebRTC,
    answers 200 and never runs the bot.
    """
    payload: dict[str, Any] = {
        "createDailyRoom": False,
        "body": agent_request.model_dump(mode="json", exclude_none=True),
    }
    if not is_production():
        payload["transport"] = "daily"
    return payload


def _detail(text: str) -> str:
    """A short, safe excerpt of the remote error (never the whole body)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:200]
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("code", "error", "detail", "message") if isinstance(data.get(k), str)]
        if parts:
            return ": ".join(parts)[:200]
    return ""


def _status_error(status: int, text: str, label: str) -> Exception:
    detail = _detail(text)
    suffix = f" ({detail})" if detail else ""
    prod = is_production()
    if status == 429:
        return TransientError(f"{label} is at capacity (HTTP 429){suffix}.", status=status, body=text)
    if status == 503:
        return TransientError(f"{label} is temporarily unavailable (HTTP 503){suffix}.", status=status, body=text)
    if status in (502, 504):
        return AmbiguousStartError(
            f"{label} answered {status}{suffix}: the bot may have started, so the start was not repeated.",
            status=status,
            body=text,
        )
    if status in (401, 403) and prod:
        return PermanentError(
            f"Pipecat Cloud refused PIPECAT_API_KEY{suffix}: set it to a public API key of the organisation that owns the agent.",
            status=status,
            body=text,
        )
    if status == 404:
        hint = "check PIPECAT_AGENT_NAME and that the agent is deployed" if prod else "check LOCAL_SERVER_URL points at `python bot.py`"
        return PermanentError(f"{label} was not found{suffix}: {hint}.", status=status, body=text)
    if status == 413:
        return PermanentError(
            f"{label} refused the start request as too large{suffix}: reduce the workflow config or patient data.",
            status=status,
            body=text,
        )
    return PermanentError(f"{label} refused to start the bot{suffix}.", status=status, body=text)


async def start_bot(agent_request: AgentRequest, http: aiohttp.ClientSession) -> dict | None:
    """Start one bot for ``agent_request``; returns the target's JSON answer
    (Pipecat Cloud: ``{"sessionId", ...}``; the local runner: ``None``)."""
    url, headers, label = _target()
    payload = start_payload(agent_request)
    try:
        # BOTRUNNER_START_TIMEOUT_S may only shorten the session's own timeout.
        limit = float(getattr(settings, "BOTRUNNER_START_TIMEOUT_S", 0) or 0)
        session_total = http.timeout.total
        extra = {}
        if limit and (session_total is None or limit < session_total):
            extra["timeout"] = aiohttp.ClientTimeout(
                total=limit, connect=http.timeout.connect, sock_connect=http.timeout.sock_connect
            )
        async with http.post(url, json=payload, headers=headers, **extra) as resp:
            status = resp.status
            text = await resp.text()
    except aiohttp.InvalidURL as e:
        raise PermanentError(f"The start URL {url!r} is not valid: check the settings.") from e
    except aiohttp.ClientSSLError as e:
        raise PermanentError(f"TLS to {label} failed ({e}): check the URL setting.") from e
    except aiohttp.ClientConnectorError as e:
        # DNS failure or refused connection: nothing was sent.
        hint = "" if is_production() else (
            ": start the bot runner with `make bot` (or `make demo` for simulated calls), or set LOCAL_SERVER_URL"
        )
        raise TransientError(f"Could not connect to {label} ({type(e).__name__}: {e}){hint}.") from e
    except aiohttp.ConnectionTimeoutError as e:
        raise TransientError(f"Connecting to {label} timed out; nothing was sent.") from e
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        # Sent (or maybe sent) and then lost: the bot may be running.
        raise AmbiguousStartError(
            f"No complete answer from {label} after the start request was sent "
            f"({type(e).__name__}): the bot may have started, so the start was not repeated."
        ) from e
    if not 200 <= status < 300:
        error = _status_error(status, text, label)
        logger.warning("start_bot: session %s: %s", agent_request.session_id, error)
        raise error
    logger.info("start_bot: session %s started via %s", agent_request.session_id, label)
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
