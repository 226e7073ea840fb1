"""Schematics: pictures of a mechanism's data flow, drawn by code (both languages).

One module per picture family (``attnkit.schematics.qkv`` for chapter 01's projections, ...). Each
exposes a pure function that returns a matplotlib Figure, with its labels from ``attnkit.i18n``.
"""
