"""The run report (JSON and markdown) and its plots."""
from typing import Any


def cell(value: Any, missing: str = "n/a") -> str:
    """A value as a table shows it: floats to 4 decimals, None as `missing`."""
    if value is None:
        return missing
    return f"{value:.4f}" if isinstance(value, float) else str(value)
