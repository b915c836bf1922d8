"""The web interface for people: HTML pages of users, indexes, projects, versions,
documentation frames, status, metrics, search results and login, rendered with Jinja2
(autoescape on) from templates and a stylesheet shipped in this package. Chosen by
content negotiation in the apps that own the URLs (a browser's ``Accept: text/html``
without ``application/json``); installers and JSON clients never get these pages."""
