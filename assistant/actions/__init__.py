"""The Rasa assistant's custom actions, hosted inside the app (api/routes/assistant_webhook.py runs them with rasa_sdk's
ActionExecutor at POST /api/v1/assistant/webhook).

- orders.py      action_order_status (by number + phone digits, or "my orders" by the channel's OpenID)
- complaint.py   validate_complaint_form, action_submit_complaint, action_reset_complaint
- indicators.py  action_query_indicator (metric × place × period, rankings, comparisons, follow-ups, charts)
- catalogue.py   the service's indicator catalogue (labels, units, words, channel labels), read once over HTTP
- handoff.py     action_human_handoff
- client.py      the async HTTP client for the service API; context.py its base URL, key and clock
- periods.py     Chinese period words → [start, end) dates in Asia/Shanghai

Actions reach the service over HTTP only (never the database), with settings.assistant_timeout_s as the timeout, and
answer politely when it is down.
"""
