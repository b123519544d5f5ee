"""One module per page: ``lab/book/chapters/<page>.py`` serves only ``chapters/.../<page>.md``.

A chapter module computes nothing itself: it formats, translates and lays
out what the mechanism and :mod:`lab.analysis` return. What it may import is
listed in :mod:`lab.book`'s docstring.
"""
