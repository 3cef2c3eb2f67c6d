"""Where citizens' messages come in other than the staff's API: the web chat widget (chat.py), WeChat (wechat/),
Open311 (open311.py), and the client of the assistant (Rasa) they relay to. Every channel files through
orders/intake.py; a new channel is a module here plus its router in api/app.py."""
