"""Fake upstream services (Telegram Bot API, Reddit and feeds) served over loopback HTTP."""
