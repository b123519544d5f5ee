"""The laboratory bench behind the book: host probe, mini VMM, benchmarks, libvirt.

Chapters import from here; every piece of logic that can break lives in this
package and is covered by the tests under ``tests/``.
"""

__version__ = "0.1.0"


def _show_whole_cells() -> None:
    """Tables in the book show whole cells: a reason or a note cut to '...' says nothing.

    Done once, here, for every chapter. pandas is optional: the probe runs on a
    bare Python (a non-root reader's, a fresh host's).
    """
    try:
        import pandas
    except ImportError:
        return
    pandas.set_option("display.max_colwidth", None)


_show_whole_cells()
