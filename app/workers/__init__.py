"""Long-running adapters outside HTTP (the MQTT ingest worker)."""
