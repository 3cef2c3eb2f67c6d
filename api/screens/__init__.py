"""The staff's web screens, served by the app, in Chinese, on the same service functions as the API.

`pages.py` the landing page, login/logout, the offline API docs and the screens' assets · `desk.py` 坐席受理 ·
`order_page.py` one order and the steps a role may take on it · `queues.py` 派单与联合研判, 承办单位, 督办与回访 ·
`session.py` the staff cookie and CSRF tokens · `templating.py` Jinja2 rendering with a strict CSP ·
`templates/` and `static/` (our own CSS and a few lines of JavaScript; nothing from a CDN). Which role uses which
screen is `screens` in orders/roles.py."""
