"""The reports' charts as PNG bytes (matplotlib, headless), drawn with the same CJK font the PDF embeds."""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

# Debian's fonts-wqy-microhei (scripts/install_browser.sh installs it): a small TrueType collection with the CJK glyphs.
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
CJK_FONT_NAME = "WenQuanYiMicroHei"


class MissingFontError(RuntimeError):
    """The CJK font is not installed: a PDF without it would show boxes (tofu) instead of Chinese."""


def cjk_font() -> Path:
    if not CJK_FONT.is_file():
        raise MissingFontError(f"the Chinese font {CJK_FONT} (Debian package fonts-wqy-microhei) is missing: "
                               "install it with `sudo apt-get install fonts-wqy-microhei` or scripts/install_browser.sh")
    return CJK_FONT


@lru_cache(maxsize=1)
def _font_properties():
    from matplotlib import font_manager

    path = str(cjk_font())
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    return buffer.getvalue()


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in the service's threads

    return Figure(figsize=(width, height))


def trend_chart(trend: list[dict], title: str) -> bytes:
    font = _font_properties()
    figure = _new_figure(7.0, 2.6)
    axes = figure.add_subplot()
    labels = [row["day"][5:] for row in trend]
    counts = [row["count"] for row in trend]
    axes.plot(range(len(counts)), counts, marker="o", markersize=3, color="#2f6fb0")
    axes.fill_between(range(len(counts)), counts, alpha=0.15, color="#2f6fb0")
    step = max(1, len(labels) // 12)
    axes.set_xticks(range(0, len(labels), step), [labels[i] for i in range(0, len(labels), step)], fontproperties=font,
                    fontsize=8)
    axes.set_ylabel("件", fontproperties=font)
    axes.set_title(title, fontproperties=font, fontsize=11)
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def share_chart(rows: list[dict], title: str, *, top: int = 8) -> bytes:
    """Horizontal bars of counts with their shares, largest on top; the rest summed as 其他."""
    font = _font_properties()
    shown = rows[:top]
    rest = sum(r["count"] for r in rows[top:])
    labels = [r["label"] for r in shown] + (["其他"] if rest else [])
    counts = [r["count"] for r in shown] + ([rest] if rest else [])
    total = sum(counts) or 1
    figure = _new_figure(7.0, 0.35 * len(labels) + 0.9)
    axes = figure.add_subplot()
    positions = list(range(len(labels)))[::-1]
    axes.barh(positions, counts, color="#3c8d6e")
    axes.set_yticks(positions, labels, fontproperties=font, fontsize=9)
    for y, n in zip(positions, counts, strict=True):
        axes.text(n, y, f" {n}（{n / total * 100:.1f}%）", va="center", fontproperties=font, fontsize=8)
    axes.set_title(title, fontproperties=font, fontsize=11)
    axes.set_xlim(right=max(counts or [1]) * 1.3)
    axes.spines[["top", "right"]].set_visible(False)
    return _png(figure)
