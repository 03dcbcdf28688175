"""The pieces every audiotok HTML report shares (verify's report, the token diff's page): JSON-ready
values, number formatting, tables and one style sheet. Pages are single files with relative links."""

from __future__ import annotations

import html
import math
from typing import Any


def json_ready(value: Any) -> Any:
    """`value` with NaN and infinities as None and dict keys as strings, at any depth (strict JSON)."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell's text: floats to `digits` significant digits, "–" for None or non-finite, escaped."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else html.escape(str(value))


class Raw(str):
    """Already-escaped HTML for a table cell."""


def table(header: list[str], body: list[list[Any]], cls: str = "") -> str:
    """An HTML table; cells are `fmt`-ed unless they are `Raw`."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = ["<tr>" + "".join(f"<td>{c if isinstance(c, Raw) else fmt(c)}</td>" for c in row) + "</tr>"
             for row in body]
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'


CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}td:nth-child(2){text-align:left}
th{max-width:16em}
.pass{color:#fff;background:#2a7d2a;padding:4px 10px}.fail{color:#fff;background:#b22;padding:4px 10px}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:6px}.card{border:1px solid #ccc;margin:16px 0;padding:8px}
.media{display:flex;flex-wrap:wrap;gap:12px}.media figure{margin:0}.media img{display:block;border:1px solid #999}
.hist{margin-right:12px}.bad td{background:#fde8e8}"""
