"""Everything a chapter shows: tables, figures, Japanese text, fallback notes, switchable views.

The layers below measure and record machine values; this one turns them into
what a reader sees. Nothing in ``lab`` imports it. Inside it, three parts
import only downward (``chapters`` -> ``core`` -> ``ja``; tests/test_layers.py):

* :mod:`lab.book.chapters` - **one module per page**: ``lab/book/chapters/<page>.py`` serves only
  the chapter ``<page>.md`` and computes nothing itself: it formats, translates and lays out what
  :mod:`lab.analysis` and the mechanism return;
* :mod:`lab.book.core` - the presentation every page shares: the one live-or-recorded cell type
  (:mod:`lab.book.core.cells`), the note a recorded cell shows (:mod:`lab.book.core.fallback`), the
  data set a page reads (:mod:`lab.book.core.pages`), listings, figure style, switchable views, the
  Sphinx extension;
* :mod:`lab.book.ja` - the one Japanese vocabulary: back ends, kinds, modes, the VMM's messages keyed
  by error code, the reasons of lab.host and lab.virt, comparisons in words.

A chapter module may import

* the mechanism and what it returns: :mod:`lab.kvm`, :mod:`lab.guests`, :mod:`lab.devices`, :mod:`lab.host`;
* the analysis of recorded data: :mod:`lab.analysis`;
* :mod:`lab.book.core` and :mod:`lab.book.ja`;
* pandas, matplotlib and IPython's display.

It imports no other chapter module and does not measure (no :mod:`lab.bench` run call): what a page
measures, the reader's cells call in the open. Pages not yet moved to :mod:`lab.book.chapters`:

* :mod:`lab.book.kvm`, :mod:`lab.book.exits_view`, :mod:`lab.book.vmexit_words` - the VMExit chapter;
* :mod:`lab.book.io`, :mod:`lab.book.virtio_view`, :mod:`lab.book.io_model` - the virtio chapter;
* :mod:`lab.book.qemu_io` - QEMU's real I/O (the virtio chapter and the third exercise);
* :mod:`lab.book.published` - the history chapters' figures of published data;
* :mod:`lab.book.host` - the probe's report and the recorded hosts;
* :mod:`lab.book.virt_tables` - lab.virt's tables in Japanese (which URI answered and why, domains, traces);
* :mod:`lab.book.summary` - the closing chapter's table.
"""

import pandas as pd

# Tables in the book show whole cells: a reason or a note cut to '...' says nothing.
pd.set_option("display.max_colwidth", None)
