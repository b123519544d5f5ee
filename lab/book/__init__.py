"""Everything a chapter shows: tables, figures, Japanese text, fallback notes, switchable views.

The layers below measure and record machine values; this one turns them into
what a reader sees. Nothing in ``lab`` imports it.

* :mod:`lab.book.kvm` - the two KVM chapters (the tour, the exits benchmark, the published vmexit figures);
* :mod:`lab.book.io` - the virtio chapter (the I/O comparison, the ring step by step);
* :mod:`lab.book.published` - the history chapters' figures of published data;
* :mod:`lab.book.host` - the probe's report and the recorded hosts;
* :mod:`lab.book.guests` - a guest program's listing as a table;
* :mod:`lab.book.virt_tables` - lab.virt's tables in Japanese (which URI answered and why, domains, traces);
* :mod:`lab.book.words` - Japanese for the English reasons of lab.host and lab.virt;
* :mod:`lab.book.transcripts` - the hands-on pages' `%%shell` cells, live or recorded;
* :mod:`lab.book.summary` - the closing chapter's table;
* :mod:`lab.book.fallback` - the note a cell shows when it falls back to recorded data;
* :mod:`lab.book.plots`, :mod:`lab.book.widgets` - figure style, switchable views;
* :mod:`lab.book.sphinx_ext` - the Sphinx extension (each chapter's executed .ipynb).
"""

import pandas as pd

# Tables in the book show whole cells: a reason or a note cut to '...' says nothing.
pd.set_option("display.max_colwidth", None)
