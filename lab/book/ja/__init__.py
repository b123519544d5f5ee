"""The book's one Japanese vocabulary: every word a page shows for a machine value.

It imports nothing of the book (only the error types it translates), so any
part of :mod:`lab.book` can use it.

* :mod:`~lab.book.ja.backends` - KVM back ends (PVM, VT-x, AMD-V, nested);
* :mod:`~lab.book.ja.messages` - the VMM's errors, keyed by error code (:class:`lab.kvm.errors.Coded`);
* :mod:`~lab.book.ja.reasons` - the reasons lab.host and lab.virt give;
* :mod:`~lab.book.ja.comparisons` - a comparison of two numbers in words.
"""
