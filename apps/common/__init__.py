"""The shared service kit: settings, logging, telemetry, errors, health, auth, db, SSE, ids.

Every app imports this package; this package imports no app.
"""
