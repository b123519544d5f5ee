"""Where the book's files are, wherever the book is checked out."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
MEASURED_DIR = DATA_DIR / "measured"
PUBLISHED_DIR = DATA_DIR / "published"
