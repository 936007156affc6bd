"""tunedeck's web side: the shared core (app/core), each domain's service, REST API and pages, and
the `tunedeck` command.

Nothing in this package imports torch or ``worker/``; the GPU side lives there (docs/architecture.md).
"""
