"""Telegram Bot API connector: ``adapter.py`` (the contract), ``payloads.py`` (updates in),
``api.py`` (Bot API calls), ``polling.py`` (getUpdates loop), ``text.py`` (UTF-16 lengths
and splitting)."""
