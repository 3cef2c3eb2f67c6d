"""WeChat official-account (公众号) channel: callback verification, plaintext and safe (AES) mode, message intake.

WeChat waits 5 s and retries up to 3 times, so the callback (views.py) stores the message (deduplicated by MsgId,
or FromUserName+CreateTime for events; models.py), answers "success" at once, and afterwards relays text and
recognised voice to the assistant (Rasa), sending its answers back through the customer-service message API
(sender.py); when the assistant is unavailable the message is filed as an order directly (filing.py). A text is
kept with its delivery until it is settled (relayed, filed or refused): a filing that fails is retried by the app's
worker (`filing.file_due`) and listed for staff (GET /api/v1/wechat/unfiled), so nothing a citizen sent is lost.
Facts: ../shared/docs/offline-stack.md.
"""
