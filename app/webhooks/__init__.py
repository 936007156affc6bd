"""Webhooks: signed HTTP POSTs when jobs succeed, fail, are cancelled or raise health alerts."""
