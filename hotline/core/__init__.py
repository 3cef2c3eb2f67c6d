"""The bottom layer: settings, the database engine and sessions, migrations, process-wide thread settings, the
service's shared secrets. It imports nothing else of ours, so every package may use it."""
