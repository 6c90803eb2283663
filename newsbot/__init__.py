"""Newsbot: a Telegram bot that brings you the news you choose."""

__version__ = "0.1.0"
