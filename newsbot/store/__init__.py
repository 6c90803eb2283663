"""Newsbot's state in Redis: chats, sources, subscriptions, seen items, messages held in
quiet hours and the fetch cache.

Every Redis command about chats and news lives in this package (the cluster modules
keep their own keys). Each chat is one hash, so a chat's settings move or vanish
together; its seen history is one small sorted set with a time-to-live, and
``forget_chat`` deletes every key of a chat (``keys.CHAT_KEYS``).

``Store`` is one class to its callers, made of one part per module; every part
inherits ``StoreBase``, so all share the one client (``self.redis``) and its scripts:

- ``connection.py``: the client for REDIS_URL (plain, Sentinel, embedded), its pool,
  the sentinels' master, ``WAIT`` for replicas
- ``base.py``: the client and its Lua scripts (``scripts.py``), readiness, key names
  the parts share
- ``chats.py``: a chat's sources, /stop and filters; moved feeds; the index
  source -> chats
- ``subscriptions.py``: a chat's digest schedule and due time, its zone and quiet hours
- ``held.py``, ``seen.py``: messages held in quiet hours; what each chat was sent
- ``cache.py``, ``notices.py``: sources' last fetches and the fetch lock; failing
  sources and the notices to their chats
- ``delivery.py``: parts of a reply already sent, delivery settings, admins, channels,
  the command menu
- ``alerts.py``: the sources chats watch and their checks
- ``lifecycle.py``: forgetting a chat, and migrating a group into its supergroup
"""

from __future__ import annotations

from newsbot.store.alerts import AlertStore, alert_member
from newsbot.store.base import feed_digest
from newsbot.store.cache import CachedNews, CacheStore
from newsbot.store.chats import ChatStore
from newsbot.store.connection import (
    LOOP_CONNECTIONS,
    POOL_WAIT_SECONDS,
    SENTINEL_TIMEOUT_SECONDS,
    AcknowledgedScript,
    connect,
    pool_size,
    sentinel_master,
    wait_for_replicas,
)
from newsbot.store.delivery import DeliveryStore, digest_scope, update_scope
from newsbot.store.held import HeldStore
from newsbot.store.lifecycle import LifecycleStore
from newsbot.store.notices import NoticeStore
from newsbot.store.seen import SeenStore
from newsbot.store.subscriptions import UTC, SubscriptionStore

__all__ = [
    "LOOP_CONNECTIONS",
    "POOL_WAIT_SECONDS",
    "SENTINEL_TIMEOUT_SECONDS",
    "UTC",
    "AcknowledgedScript",
    "CachedNews",
    "Store",
    "alert_member",
    "connect",
    "digest_scope",
    "feed_digest",
    "pool_size",
    "sentinel_master",
    "update_scope",
    "wait_for_replicas",
]


class Store(
    ChatStore,
    SubscriptionStore,
    HeldStore,
    SeenStore,
    CacheStore,
    NoticeStore,
    DeliveryStore,
    AlertStore,
    LifecycleStore,
):
    """Chats, subscriptions, seen items and the fetch cache.

    Made of parts (mixins over ``StoreBase``); no two parts define the same name, so
    the order of the bases decides nothing (tests/test_store.py checks it).
    """
