"""Chinese word segmentation with jieba and a user dictionary generated from the gazetteer and the knowledge base."""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

with warnings.catch_warnings():
    # jieba 0.42.1 imports pkg_resources (hence setuptools<81); its deprecation warning is not ours to fix.
    warnings.simplefilter("ignore", UserWarning)
    import jieba

# jieba logs its cache building at INFO on every start; it is noise for a service.
jieba.setLogLevel(logging.WARNING)

STOPWORDS = frozenset(
    "的 了 是 在 我 我们 你们 他们 有 和 就 都 也 还 又 很 太 啊 吧 呢 吗 啦 哦 咯 啰 哒 嘛 呀 这 那 这个 那个 一个 什么 怎么 "
    "没有 不 被 给 把 让 对 从 到 说 要 会 能 可以 已经 现在 一直 每天 天天 请 希望 反映 投诉 问题 情况 相关 部门 处理 解决 "
    "尽快 谢谢 你好 您好 市民 来电 来电人 诉求".split()
)


class Segmenter:
    """A private jieba Tokenizer, so a city's user words never leak into another instance."""

    def __init__(self, user_words: Iterable[str] = ()):
        self._tokenizer = jieba.Tokenizer()
        cache_dir = Path(os.environ.get("TMPDIR", tempfile.gettempdir()))
        self._tokenizer.tmp_dir = str(cache_dir)
        for word in sorted(set(user_words)):
            # Words containing digits split phone numbers (offline-stack.md): never add them.
            if len(word) >= 2 and not any(ch.isdigit() for ch in word):
                self._tokenizer.add_word(word, freq=20_000)

    def cut(self, text: str) -> list[str]:
        return [w for w in self._tokenizer.lcut(text) if w.strip()]

    def content_words(self, text: str) -> list[str]:
        """Words that carry meaning: no stopwords, punctuation or single characters."""
        return [w for w in self.cut(text) if len(w) >= 2 and w not in STOPWORDS and any("\u4e00" <= c <= "\u9fff" or c.isalpha() for c in w)]
