"""Request dependencies: the services, the authenticated caller, rate limiting and admission."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from service.security import ApiError, Principal, authenticate


async def services(request: Request) -> Any:
    # async: FastAPI runs a plain `def` dependency in a worker thread, four thread hops per request here
    # (a third of a refused request's CPU, and a wait behind the pool when hundreds arrive at once).
    return request.app.state.services


Services = Annotated[Any, Depends(services)]


async def principal(
    request: Request,
    svc: Services,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    client = request.client.host if request.client else "unknown"
    same_origin = request.method == "GET" and request.headers.get("sec-fetch-site") == "same-origin"
    return await authenticate(svc.keys, authorization, x_api_key, request.headers.get("origin"), client,
                              open_allowed=svc.settings.loopback, same_origin=same_origin)  # fmt: skip


Caller = Annotated[Principal, Depends(principal)]


def admit(svc: Any, who: Principal) -> None:
    """Per-caller rate limit (429), then admission control (503), both with Retry-After."""
    wait = svc.limiter.check(who.bucket)
    if wait is not None:
        secs = max(1, int(wait + 0.999))
        raise ApiError(429, f"rate limit: {svc.settings.rate_limit_per_minute} debates per minute; retry in {secs} s",
                       type_="rate_limit_error", code="rate_limited", headers={"Retry-After": str(secs)})  # fmt: skip
    if not svc.runner.reserve():  # the caller must unreserve() once the debate is launched or refused
        svc.limiter.refund(who.bucket)  # nothing ran: a busy service must not use up the caller's allowance
        raise ApiError(503, "the service is at capacity; retry shortly", type_="overloaded_error",
                       code="at_capacity", headers={"Retry-After": "2"})  # fmt: skip
