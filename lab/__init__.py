"""The laboratory bench behind the book: host probe, mini VMM, benchmarks, libvirt.

Chapters import from here; every piece of logic that can break lives in this
package and is covered by the tests under ``tests/``.
"""

__version__ = "0.1.0"
