"""tunedeck's web side: settings, database models, services, REST API and HTML views.

Nothing in this package imports torch; the GPU side lives in ``worker/``.
"""
