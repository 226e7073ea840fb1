"""Chapter catalogs: the sentences that only a chapter prints, one file per chapter.

``attnkit/text/chNN.py`` registers the ``chNN.*`` keys of chapter NN (tables it prints, the
conclusions its timing cells draw from measured numbers, its explorers' titles). A library module
(``attnkit.gqa``, ``attnkit.rope``, ...) registers only the labels its own functions print, so an
engineer reading it sees the mechanism, not a chapter. A chapter's first code cell imports its
catalog: ``import attnkit.text.ch05``.
"""
