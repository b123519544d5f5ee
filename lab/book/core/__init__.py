"""The presentation every page shares (a chapter module imports it; it imports no chapter module).

* :mod:`~lab.book.core.cells` - the one live-or-recorded cell type, ``%%kvm`` (recordings: :mod:`lab.bench.cells`);
* :mod:`~lab.book.core.transcripts` - the hands-on pages' ``%%shell`` cells, live or recorded;
* :mod:`~lab.book.core.fallback` - the note a cell shows when it falls back to recorded data;
* :mod:`~lab.book.core.pages` - which data set a page reads (live here, or its recorded host);
* :mod:`~lab.book.core.listing` - a guest program's listing as a table;
* :mod:`~lab.book.core.plots`, :mod:`~lab.book.core.widgets` - figure style, switchable views;
* :mod:`~lab.book.core.sphinx_ext` - the Sphinx extension (each chapter's executed .ipynb).
"""
