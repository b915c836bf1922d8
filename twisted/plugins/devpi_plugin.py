"""The ``devpi`` twistd plugin: one ServiceMaker, importing devpi_twisted.service only when
``twistd devpi`` runs (twistd imports every plugin file at each start)."""

from twisted.application.service import ServiceMaker

devpi = ServiceMaker(  # type: ignore[no-untyped-call]  # twisted's ServiceMaker is unannotated
    "devpi-twisted", "devpi_twisted.service",
    "Python package index: PyPI mirror and private indexes.", "devpi")
