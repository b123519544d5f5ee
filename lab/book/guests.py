"""A guest program as the chapters show it: its listing as a table."""

from __future__ import annotations

import pandas as pd

from lab.guests import LISTING_COLUMNS, Program


def listing(program: Program) -> pd.DataFrame:
    """The listing as a table: address, bytes, label, assembly, comment."""
    return pd.DataFrame(program.rows(), columns=list(LISTING_COLUMNS))
