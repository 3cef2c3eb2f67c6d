"""Who may call: API keys for systems (keys.py), staff accounts and their JWTs (staff.py), the tables (models.py).
The role rules themselves are orders/roles.py; api/deps.py turns a request's credential into a Principal."""
