"""Request dependencies: the services, the authenticated caller, rate limiting and admission."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from service.security import ApiError, Principal, arrival, authenticate, presented_key
from service.services import AppServices


async def services(request: Request) -> AppServices:
    # async: FastAPI runs a plain `def` dependency in a worker thread, four thread hops per request here
    # (a third of a refused request's CPU, and a wait behind the pool when hundreds arrive at once).
    svc: AppServices = request.app.state.services
    return svc


Services = Annotated[AppServices, Depends(services)]


async def principal(
    request: Request,
    svc: Services,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The caller; 401/403 when refused, 429 while its address has failed too often (each failure logged)."""
    client = request.client.host if request.client else "unknown"
    wait = svc.failures.retry_after(client)
    if wait is not None:
        raise ApiError(
            429,
            f"too many failed authentications from this address; retry in {wait} s",
            type_="rate_limit_error",
            code="auth_throttled",
            headers={"Retry-After": str(wait)},
        )
    same_origin = request.method == "GET" and request.headers.get("sec-fetch-site") == "same-origin"
    try:
        return await authenticate(
            svc.keys,
            authorization,
            x_api_key,
            request.headers.get("origin"),
            client,
            open_allowed=svc.settings.loopback,
            same_origin=same_origin,
            arrived=arrival(request.scope),
        )
    except ApiError as exc:
        if exc.status == 401:
            svc.failures.failed(client, _presented(authorization, x_api_key), exc.code)
        raise


def _presented(authorization: str | None, x_api_key: str | None) -> str | None:
    try:
        return presented_key(authorization, x_api_key)
    except ApiError:
        return authorization  # not a Bearer header: its first characters at most are logged


Caller = Annotated[Principal, Depends(principal)]


async def metrics_reader(
    request: Request,
    svc: Services,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Who may read /metrics: CONSENSUS_METRICS_TOKEN as a bearer token, or a secret key; anyone only while the
    service is open (loopback, no keys) and no token is set. A publishable key is in its site's page source."""
    token = svc.settings.metrics_token
    if token is not None and authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.get_secret_value().encode()
        ):
            return
    who = await principal(request, svc, authorization, x_api_key)
    if who.key_id is None and token is not None:
        client = request.client.host if request.client else "unknown"
        svc.failures.failed(client, _presented(authorization, x_api_key), "missing_metrics_token")
        raise ApiError(
            401,
            "/metrics needs CONSENSUS_METRICS_TOKEN or a secret key (Authorization: Bearer ...)",
            type_="authentication_error",
            param="Authorization",
            code="missing_metrics_token",
        )
    if who.shared:
        raise ApiError(
            403,
            "a publishable key (one with origins) cannot read /metrics: every visitor of its site "
            "holds it; use a secret key or CONSENSUS_METRICS_TOKEN",
            type_="permission_error",
            param="Authorization",
            code="metrics_not_allowed",
        )


def admit(svc: AppServices, who: Principal) -> None:
    """Per-caller rate limit (429), then admission control (503), both with Retry-After."""
    wait = svc.limiter.check(who.bucket)
    if wait is not None:
        secs = max(1, int(wait + 0.999))
        raise ApiError(
            429,
            f"rate limit: {svc.settings.rate_limit_per_minute} debates per minute; retry in {secs} s",
            type_="rate_limit_error",
            code="rate_limited",
            headers={"Retry-After": str(secs)},
        )
    if not svc.runner.reserve():  # the caller must unreserve() once the debate is launched or refused
        svc.limiter.refund(who.bucket)  # nothing ran: a busy service must not use up the caller's allowance
        raise ApiError(
            503,
            "the service is at capacity; retry shortly",
            type_="overloaded_error",
            code="at_capacity",
            headers={"Retry-After": "2"},
        )
