"""What the measurements mean: pure analysis below the book layer.

The mechanism measures (``lab.bench``), ``lab.published`` holds cited figures;
this package turns both into facts a page can state, and says which of them are
sound on the KVM back end that produced them. Everything here is English and
numbers: no Japanese, no tables for reading, no figures. ``lab.book`` words what
it returns and computes nothing of its own.

* :mod:`lab.analysis.measures` - for each quantity (exits per request, the
  user-space round trip, an in-kernel exit, the hardware exit cost, an emulated
  instruction, the native loop), on which back end it can be measured, and what
  one benchmark kind's number contains there;
* :mod:`lab.analysis.compare` - the one definition of "about the same" and of a
  comparison's direction;
* :mod:`lab.analysis.vmexit` - the facts of the VMExit chapter from one data set;
* :mod:`lab.analysis.io_model` - exits per request x cost per exit, and what
  the same requests would carry in exit overhead on bare metal.

Imports: ``lab.backends``, ``lab.published``, ``lab.bench`` (for the data set);
never ``lab.book``.
"""
