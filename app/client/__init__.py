"""The `tunedeck jobs` / `tunedeck datasets` commands: a client of a running tunedeck's REST API.

It talks HTTP with an API key, like any other service, so it imports nothing of the server side.
"""
