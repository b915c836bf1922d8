from twisted.application.service import ServiceMaker

devpi = ServiceMaker(
    "devpi-twisted", "devpi_twisted.service",
    "Python package index: PyPI mirror and private indexes.", "devpi")
