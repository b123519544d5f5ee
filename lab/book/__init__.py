"""Everything a chapter shows: tables, figures, Japanese text, fallback notes, switchable views.

The layers below measure and record machine values; this one turns them into
what a reader sees. Nothing in ``lab`` imports it.

**One module per page** (:mod:`lab.book.chapters`): ``lab/book/chapters/<page>.py``
serves only the chapter ``<page>.md`` and computes nothing itself. A chapter
module may import

* the mechanism and what it returns: :mod:`lab.kvm`, :mod:`lab.guests`, :mod:`lab.devices`, :mod:`lab.host`;
* the analysis of recorded data: :mod:`lab.analysis`, and the data set a page reads (:mod:`lab.book.pages`);
* the shared presentation here: :mod:`lab.book.cells` (the ``%%kvm`` cell type), :mod:`lab.book.fallback`
  (the notes), :mod:`lab.book.backend` and :mod:`lab.book.vmm_words` (the Japanese words),
  :mod:`lab.book.guests` (listings), :mod:`lab.book.plots` and :mod:`lab.book.widgets`;
* pandas, matplotlib and IPython's display.

It imports no other chapter module and does not measure (no :mod:`lab.bench` run call): what a page
measures, the reader's cells call in the open. Pages not yet moved there:

* :mod:`lab.book.kvm` - the VMExit chapter (the exits benchmark, the published vmexit figures);
* :mod:`lab.book.io` - the virtio chapter (the I/O comparison, the ring step by step);
* :mod:`lab.book.published` - the history chapters' figures of published data;
* :mod:`lab.book.host` - the probe's report and the recorded hosts;
* :mod:`lab.book.virt_tables` - lab.virt's tables in Japanese (which URI answered and why, domains, traces);
* :mod:`lab.book.summary` - the closing chapter's table.

Shared by every page:

* :mod:`lab.book.cells` - the one live-or-recorded cell type, ``%%kvm`` (recordings: :mod:`lab.bench.cells`);
* :mod:`lab.book.transcripts` - the hands-on pages' ``%%shell`` cells, live or recorded;
* :mod:`lab.book.fallback` - the note a cell shows when it falls back to recorded data;
* :mod:`lab.book.guests` - a guest program's listing as a table;
* :mod:`lab.book.words` - Japanese for the English reasons of lab.host and lab.virt;
* :mod:`lab.book.plots`, :mod:`lab.book.widgets` - figure style, switchable views;
* :mod:`lab.book.sphinx_ext` - the Sphinx extension (each chapter's executed .ipynb).
"""

import pandas as pd

# Tables in the book show whole cells: a reason or a note cut to '...' says nothing.
pd.set_option("display.max_colwidth", None)
