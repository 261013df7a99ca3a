"""The services one app is built with: settings, panel, store, runner, keys and limits, made once per app."""

from __future__ import annotations

from consensus.providers.base import Provider
from consensus.types import Panel
from service.runner import Runner
from service.security import AuthFailures, KeyCache, RateLimiter
from service.settings import Settings
from service.store import Store


class AppServices:
    """What the routes need, built once per app."""

    def __init__(self, settings: Settings, panel: Panel, provider: Provider) -> None:
        self.settings = settings
        self.panel = panel
        self.store = Store(settings.database_url, settings.db_pool_size, settings.db_pool_timeout_s)
        self.runner = Runner(self.store, panel, provider, settings)
        self.keys = KeyCache(self.store, settings.key_cache_s)
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.failures = AuthFailures(settings.auth_failures_per_minute)
        self.ready = False
