"""Time until the cockpit has drawn every panel (issue 14: first paint ≤ 1.5 s on the seeded database).

The real router, a SQLite database seeded with `--orders` orders (or an existing one with `--db`), the app on a
loopback port, Debian's headless Chromium at 1440×1000 logged in as an official. Each load is timed from the
navigation's start (performance.timeOrigin) to the moment the page's script marks each panel drawn
(`data-drawn-<panel>`) and every panel drawn (`data-loaded`, after all its API calls settled).

    HOTLINE_CACHE_DIR=/work/cache-me .venv/bin/python benchmarks/cockpit_paint.py --orders 5000 --loads 10
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from rich.console import Console  # noqa: E402
from seeded import seeded_database  # noqa: E402
from support import serving, start_chromium  # noqa: E402  (the tests' own server and browser helpers)

from api.app import create_app  # noqa: E402
from api.auth.staff import create_staff  # noqa: E402
from hotline.core.db import transaction  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "cockpit_paint.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--db", type=Path, help="an existing seeded SQLite file (its folder is the state folder)")
    args = parser.parse_args()
    seeded = seeded_database(orders=args.orders, prefix="cockpit-paint-", console=Console(), existing=args.db)
    folder, settings, router, sessions = seeded.folder, seeded.settings, seeded.router, seeded.sessions
    username = f"paint-{time.time_ns()}"   # a fresh official on a reused database
    with transaction(sessions) as session:
        create_staff(session, username=username, password="paint-official-Passw0rd!", role="official")
    times, panels = [], []
    with serving(create_app(settings, router=router)) as base:
        browser = start_chromium(folder / "profile", window="1440,1000", page_load_timeout_s=60)
        try:
            browser.get(base + "/login")
            browser.find_element("css selector", "input[name=username]").send_keys(username)
            password = browser.find_element("css selector", "input[name=password]")
            password.send_keys("paint-official-Passw0rd!")
            password.submit()
            time.sleep(1)
            for _ in range(args.loads + 1):   # the first load warms the browser's cache of the scripts
                browser.get(base + "/cockpit")
                deadline = time.monotonic() + 60
                loaded = None
                while time.monotonic() < deadline and not loaded:
                    loaded = browser.execute_script("return document.getElementById('cockpit').dataset.loaded")
                    time.sleep(0.02)
                origin = float(browser.execute_script("return performance.timeOrigin"))
                drawn = browser.execute_script("return {...document.getElementById('cockpit').dataset}")
                times.append(float(loaded) - origin)
                panels.append({key[5:]: round(float(value) - origin, 1) for key, value in drawn.items()
                               if key.startswith("drawn")})
        finally:
            browser.quit()
    first, warm = times[0], times[1:]
    by_panel = {name: round(statistics.median(p[name] for p in panels[1:] if name in p), 1) for name in panels[-1]}
    result = {"orders": args.orders if not args.db else "existing database", "loads": len(warm),
              "first_load_ms": round(first, 1), "all_panels_p50_ms": round(statistics.median(warm), 1),
              "all_panels_max_ms": round(max(warm), 1), "all_ms": [round(t, 1) for t in warm],
              "panel_drawn_p50_ms": dict(sorted(by_panel.items(), key=lambda kv: kv[1]))}
    print(json.dumps(result, ensure_ascii=False, indent=1))
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
