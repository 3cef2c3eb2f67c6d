"""The HTTP endpoints, one module per noun: thin views that validate, call a service function of orders/ or
routing/ with the session, and map its errors to HTTP. A new endpoint goes in the module of its noun (or a new
module here, included in api/app.py); what it needs comes from api/deps.py."""
