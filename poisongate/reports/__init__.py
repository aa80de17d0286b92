"""The run report (JSON and markdown) and its plots."""
import html
import re
from typing import Any

MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#~!])")


def md(value: Any) -> str:
    """A value a user supplied (a file name, column, id, label), as markdown text that renders as itself: HTML
    escaped (a column named <script> stays text wherever the markdown is shown), markdown's specials
    backslash-escaped, newlines as spaces."""
    text = html.escape(str(value), quote=False).replace("\n", " ").replace("\r", " ")
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def cell(value: Any, missing: str = "n/a") -> str:
    """A value as a table shows it: floats to 4 decimals, None as `missing`."""
    if value is None:
        return missing
    return f"{value:.4f}" if isinstance(value, float) else str(value)
