"""The caption cleaning the published MAGI-1 models were trained with (their T5 wrapper cleans every prompt
twice before tokenizing; ``TextConfig.clean_captions``).

One pass: unquote, lower-case, drop URLs, HTML, @names, CJK blocks, ids, file names and shop phrases,
normalise dashes, quotes and whitespace, fix broken Unicode (ftfy) and unescape HTML entities. The rules
run in the order below; ``clean_caption`` applies the pass twice, as the official does.
"""

from __future__ import annotations

import html
import re
import urllib.parse

from magi.errors import InputError

_URL_TLDS = r"(?:com|co|ru|net|org|edu|gov|it)"
_BAD_PUNCT = r"[#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\\/\*]{1,}"  # runs of these become one space
_DASHES = (r"[\u002D\u058A\u05BE\u1400\u1806\u2010-\u2015\u2E17\u2E1A\u2E3A\u2E3B\u2E40\u301C\u3030\u30A0"
           r"\uFE31\uFE32\uFE58\uFE63\uFF0D]+")
_CJK_BLOCKS = ("\u31c0-\u31ef", "\u31f0-\u31ff", "\u3200-\u32ff", "\u3300-\u33ff", "\u3400-\u4dbf",
               "\u4dc0-\u4dff", "\u4e00-\u9fff")
_FILE_TYPES = r"(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)"

# (pattern, replacement) applied in order after the HTML is stripped and before the Unicode fix
_BEFORE_FIX = [
    (r"@[\w\d]+\b", ""),  # @nickname
    *((f"[{block}]+", "") for block in _CJK_BLOCKS),
    (_DASHES, "-"),
    (r"[`´«»“”¨]", '"'),
    (r"[‘’]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),  # IP addresses
    (r"\d:\d\d\s+$", ""),  # article ids
    (r"\\n", " "),  # a literal backslash-n
    (r"#\d{1,3}\b", ""),
    (r"#\d{5,}\b", ""),
    (r"\b\d{6,}\b", ""),
    (rf"[\S]+\.{_FILE_TYPES}", ""),  # file names
    (r"[\"\']{2,}", '"'),
    (r"[\.]{2,}", " "),
    (_BAD_PUNCT, " "),
    (r"\s+\.\s+", " "),
]
# applied after the Unicode fix
_AFTER_FIX = [
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),  # jc6640
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),  # jc6640vc
    (r"\b\d+[a-zA-Z]+\d+\b", ""),  # 6640vc231
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (rf"\b{_FILE_TYPES}(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", " "),  # j2d1a2a...
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),  # sizes such as 1920x1080
    (r"\b\s+\:\s+", ": "),
    (r"(\D[,\./])\b", r"\1 "),
    (r"\s+", " "),
    (r"^[\"\']([\w\W]+)[\"\']$", r"\1"),
    (r"^[\'\_,\-\:;]", ""),
    (r"[\'\_,\-\:\-\+]$", ""),
    (r"^\.\S+$", ""),
]


def _fix_text(text: str) -> str:
    try:
        import ftfy
    except ImportError:
        raise InputError("text.clean_captions needs the package ftfy (pip install 'magi[text]')") from None
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def _strip_html(text: str) -> str:
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise InputError("text.clean_captions needs the package beautifulsoup4 (pip install 'magi[text]')") from None
    return BeautifulSoup(text, features="html.parser").text


def clean_once(caption: str) -> str:
    caption = urllib.parse.unquote_plus(str(caption)).strip().lower()
    caption = caption.replace("<person>", "person")
    for prefix in (r"https?:(?:\/{1,3}|[a-zA-Z0-9%])", r"www:(?:\/{1,3}|[a-zA-Z0-9%])"):
        caption = re.sub(rf"\b((?:{prefix}|[a-zA-Z0-9.\-]+[.]{_URL_TLDS}[\w/-]*\b\/?(?!@)))", "", caption)
    caption = _strip_html(caption)
    for pattern, replacement in _BEFORE_FIX:
        caption = re.sub(pattern, replacement, caption)
    if len(re.findall(r"(?:\-|\_)", caption)) > 3:  # this-is-my-cute-cat / this_is_my_cute_cat
        caption = re.sub(r"(?:\-|\_)", " ", caption)
    caption = _fix_text(caption)
    for pattern, replacement in _AFTER_FIX:
        caption = re.sub(pattern, replacement, caption)
    return caption.strip()


def clean_caption(caption: str) -> str:
    """The prompt as the published models saw their captions: two cleaning passes."""
    return clean_once(clean_once(caption))
