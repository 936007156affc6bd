"""Accounts and access: users, roles, API keys, browser sessions with CSRF, the audit log."""
