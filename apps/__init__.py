"""Jan Server service apps: four FastAPI services, the shared kit, and the local gateway."""
