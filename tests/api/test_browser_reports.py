"""Reports in a real browser (Debian's headless Chromium): an official opens /cockpit/reports, generates this week's
周报, and the PDF and the Excel file behind the page's links are downloaded with the browser's own session cookie.
The PDF's first page is rendered (pdfium) and its Chinese is checked to be glyphs, not tofu: a font without CJK
glyphs draws every Chinese character as the same empty box, so two different characters of the title must each
have ink and differ from each other.

With HOTLINE_SCREENSHOT_DIR set the page is photographed there as report.png (docs/screens/ is made that way).
"""
from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook
from support import start_chromium

from api.auth.staff import create_staff
from api.deps import STAFF_COOKIE
from hotline.core.clock import CITY_TZ
from hotline.core.db import transaction
from orders.intake import file_complaint
from orders.service import Actor

WAIT_S = 60   # generating a report takes seconds on a busy machine


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), window="1280,800", page_load_timeout_s=WAIT_S)
    yield driver
    driver.quit()


def _wait(browser, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(condition, message)


def _by(css: str):
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


def _glyph_crops(pdf: bytes, first: str, second: str, scale: float = 4.0):
    """The rendered first page's pixels under the first occurrence of `first` immediately followed by `second`, as
    two equally sized greyscale images."""
    pdfium = pytest.importorskip("pypdfium2")
    page = pdfium.PdfDocument(pdf)[0]
    text = page.get_textpage()
    chars = [text.get_text_range(i, 1) for i in range(text.count_chars())]
    index = next((i for i in range(len(chars) - 1) if chars[i] == first and chars[i + 1] == second), None)
    # A font without CJK glyphs maps them to its empty glyph, which carries no text: then nothing is found here.
    assert index is not None, f"“{first}{second}” is not in the first page's text: the Chinese did not survive"
    image = page.render(scale=scale).to_pil().convert("L")
    height = page.get_height()
    crops = []
    for i in (index, index + 1):
        left, bottom, right, top = text.get_charbox(i, loose=True)
        crops.append(image.crop((int(left * scale), int((height - top) * scale), int(right * scale),
                                 int((height - bottom) * scale))))
    size = (min(c.width for c in crops), min(c.height for c in crops))
    return [c.crop((0, 0, *size)) for c in crops], image


def _ink(image) -> int:
    return sum(1 for value in image.tobytes() if value < 128)


def test_an_official_generates_and_downloads_a_weekly_report(browser, server, app_and_keys, tmp_path):
    base, _, factory = server
    with transaction(factory) as session:
        create_staff(session, username="r-official", password="r-official-Passw0rd!", role="official")
        for text, channel in (("岳麓区望月湖街道晚上好多摊贩占道摆摊卖烧烤，人行道都过不去", "wechat"),
                              ("雨花区东塘街道工地夜间施工噪音太大", "hotline")):
            file_complaint(session, text=text, channel=channel, actor=Actor("intake", "system"), routing=None,
                           routing_model=None, auto_dispatch=False)

    browser.delete_all_cookies()
    browser.get(base + "/cockpit/reports")
    _wait(browser, lambda b: "/login" in b.current_url, "a stranger is sent to the login page")
    browser.find_element(*_by("input[name=username]")).send_keys("r-official")
    password = browser.find_element(*_by("input[name=password]"))
    password.send_keys("r-official-Passw0rd!")
    password.submit()
    _wait(browser, lambda b: b.current_url.endswith("/cockpit/reports"), "after login the official is on the page")

    assert browser.find_element(*_by("#report-period")).get_attribute("value") == "week"
    browser.find_element(*_by("#generate-report")).click()
    _wait(browser, lambda b: "made=" in b.current_url and b.find_elements(*_by("a.download[data-format=pdf]")),
          "the weekly report is generated and listed")
    today = dt.datetime.now(CITY_TZ).date()
    monday = today - dt.timedelta(days=today.weekday())
    row = browser.find_element(*_by("#report-archive tbody tr"))
    assert "周报" in row.text and monday.isoformat() in row.text
    shots = Path(os.environ.get("HOTLINE_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "report.png"))

    # The files behind the links, fetched with the browser's session (a cookie reads, never writes).
    cookies = {STAFF_COOKIE: browser.get_cookie(STAFF_COOKIE)["value"]}
    links = {a.get_attribute("data-format"): a.get_attribute("href")
             for a in browser.find_elements(*_by("#report-archive tbody tr:first-child a.download"))}
    assert set(links) == {"html", "pdf", "xlsx"}
    pdf = httpx.get(links["pdf"], cookies=cookies, timeout=WAIT_S)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''" in pdf.headers["content-disposition"]
    excel = httpx.get(links["xlsx"], cookies=cookies, timeout=WAIT_S)
    assert excel.status_code == 200
    summary = {r[0]: r[1] for r in load_workbook(io.BytesIO(excel.content))["汇总"].iter_rows(values_only=True)
               if r and r[0]}
    assert summary["工单数"] == 2

    # Chinese glyphs, not tofu: 周 and 报 of the title each have ink, and they are different drawings.
    (week_glyph, report_glyph), page = _glyph_crops(pdf.content, "周", "报")
    page.save(tmp_path / "report-page-1.png")
    assert _ink(week_glyph) > 20 and _ink(report_glyph) > 20
    differing = sum(1 for a, b in zip(week_glyph.tobytes(), report_glyph.tobytes(), strict=True) if abs(a - b) > 96)
    assert differing > 0.05 * week_glyph.width * week_glyph.height, "the two characters render alike: tofu"
    assert b"WenQuanYiMicroHei" in pdf.content and b"/FontFile2" in pdf.content   # the CJK font travels with it
