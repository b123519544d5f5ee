"""The laboratory bench behind the book: host probe, mini VMM, benchmarks, libvirt.

A library with the book on top. Layers, each importing only those below it
(``tests/test_layers.py`` runs the import contract of ``pyproject.toml``):

* :mod:`lab.book` - what a chapter shows (tables, figures, Japanese text); and
  :mod:`lab.__main__`, the command line;
* :mod:`lab.bench`, :mod:`lab.virt`, :mod:`lab.published` - measurements and
  recording, libvirt, the published figures;
* :mod:`lab.devices`, :mod:`lab.host` - device models and their live runs; the probe;
* :mod:`lab.kvm`, :mod:`lab.guests` - the mini VMM and the guest programs;
* foundations any layer may use: :mod:`lab.datapackage`, :mod:`lab.paths`.

Importing ``lab`` imports nothing outside the standard library: the probe
runs on a bare Python (a non-root reader's, a fresh host's).
"""

__version__ = "0.1.0"
