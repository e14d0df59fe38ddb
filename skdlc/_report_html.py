"""HTML building blocks of the report: one self-contained page, every user string escaped.

Nothing here loads anything from the network: the style sheet is inline, images are
``data:`` URIs, and there is no script. Every piece of text that comes from the user's
data (file names, class names, records, the command line) goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = ["esc", "Section", "page", "table", "png_img", "not_available", "truncate"]

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
 color:#1d2330;background:#f5f6f8}
main{max-width:1180px;margin:0 auto;padding:18px 24px 40px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:18px;margin:0 0 10px}
h3{font-size:14px;margin:14px 0 6px}
.meta{color:#5b6475;margin:0 0 12px}
nav{margin:0 0 14px}nav a{margin-right:12px;color:#2456a6;text-decoration:none}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:14px 18px;
 margin:0 0 16px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}
td,th{border-bottom:1px solid #e6e9ef;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{max-height:340px;overflow:auto;display:inline-block}
img.fig{max-width:100%;height:auto;display:block;margin:6px 0}
.na{color:#8a5a00;background:#fff6e0;border:1px solid #f0d9a0;padding:6px 10px;
 border-radius:6px;display:inline-block}
.note{color:#5b6475;font-size:12px}
.row{display:flex;gap:4px;align-items:flex-start;flex-wrap:wrap;margin:0 0 6px}
.cname{font-size:12px;font-weight:600;width:64px;padding-top:24px;overflow-wrap:anywhere}
.gap{width:14px;padding-top:24px;color:#99a;text-align:center}
.pair{display:flex;gap:18px;align-items:flex-start;flex-wrap:wrap}.pair img.fig{max-width:640px}
figure.t{margin:0;width:68px;text-align:center;font-size:10px;color:#3a4150}
figure.t img,figure.t .ph{width:58px;height:58px;object-fit:contain;image-rendering:pixelated;
 border:3px solid #c9ced8;background:#eef0f4;display:block;margin:0 auto}
figure.t.kept img,figure.t.kept .ph{border-color:#1f9d55}
figure.t figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
figure.t .ph{line-height:58px;color:#99a}
.legend span{display:inline-block;width:12px;height:12px;border:3px solid #c9ced8;
 vertical-align:middle;margin:0 4px 0 10px}.legend span.k{border-color:#1f9d55}
ol.rec{padding-left:22px;margin:4px 0}ol.rec li{margin:2px 0}
ol.rec code{white-space:pre-wrap;word-break:break-word;font-size:12px}
ol.rec li.kept::marker{color:#1f9d55;font-weight:bold}
.tag{font-size:11px;border-radius:4px;padding:0 4px;margin-right:6px}
.tag.k{background:#d8f3e3;color:#12683a}.tag.d{background:#eceef2;color:#555}
pre{background:#f0f2f6;padding:8px 10px;border-radius:6px;white-space:pre-wrap;
 word-break:break-all;font-size:12px}
"""


def esc(value) -> str:
    """HTML-escape any value's ``str`` (quotes included, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def truncate(text: str, n: int) -> str:
    text = " ".join(str(text).split())  # one line: newlines and runs of spaces collapse
    return text if len(text) <= n else text[: n - 1] + "\u2026"


@dataclass
class Section:
    id: str
    title: str
    body: str  # HTML, already escaped where needed


def not_available(reason: str) -> str:
    return f'<p class="na">not available: {esc(reason)}</p>'


def png_img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="fig" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table(header: Sequence[str] | None, rows: Iterable[Sequence], *, numeric: Sequence[int] = (),
          scroll: bool = False) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header or ())
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="num">{esc(v)}</td>' if j in numeric else f"<td>{esc(v)}</td>"
            for j, v in enumerate(r)
        )
        body.append(f"<tr>{cells}</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    t = f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{t}</div>' if scroll else t


def page(title: str, meta: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{s.id}"><h2>{esc(s.title)}</h2>\n{s.body}\n</section>' for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body><main>"
        f"<h1>{esc(title)}</h1><p class=\"meta\">{esc(meta)}</p><nav>{nav}</nav>\n{body}\n"
        "</main></body></html>\n"
    )
