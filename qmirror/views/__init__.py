"""What a person sees: reports, region trees, the memory-map picture, RAM maps.

Owns text/JSON/JUnit reports (:mod:`~qmirror.views.report`), rich output
(:mod:`~qmirror.views.richtext`, :mod:`~qmirror.views.treeview`), the HTML/SVG map
(:mod:`~qmirror.views.mapview`, :mod:`~qmirror.views.mapsvg`, ``templates/``) and
the guest RAM map (:mod:`~qmirror.views.rammap`).

May import: :mod:`qmirror.verify` and everything below it, rich. Not
:mod:`qmirror.live` or :mod:`qmirror.cli`; no network or process I/O.
"""
