"""Which commands change a group's state, and so need one of its admins (pure)."""

from __future__ import annotations

import pytest

from newsbot.admins import changes_something


@pytest.mark.parametrize(
    "command, argument, stopped, changes",
    [
        ("help", "", False, False),
        ("fetch", "", False, False),
        ("fetch", "@mychannel", False, False),
        ("settings", "", False, False),
        ("source", "", False, False),
        ("sources", "", False, False),
        ("source", "python", False, True),
        ("filter", "", False, False),
        ("filter", "python rust", False, True),
        ("tz", "", False, False),
        ("tz", "Europe/Berlin", False, True),
        ("add", "golang", False, True),
        ("remove", "", False, True),
        ("subscribe", "", False, True),
        ("unsubscribe", "", False, True),
        ("stop", "", False, True),
        ("import", "", False, True),
        ("start", "", False, False),
        ("start", "", True, True),
        ("somethingnew", "", False, True),  # not known to be harmless: gated
    ],
)
def test_changes_something(command: str, argument: str, stopped: bool, changes: bool) -> None:
    assert changes_something(command, argument, stopped) is changes
