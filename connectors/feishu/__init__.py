"""Feishu / Lark connector: event subscription (webhook mode, schema 2.0) and the IM API."""
