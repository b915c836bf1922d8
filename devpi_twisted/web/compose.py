"""The web layer composed in one place: the apps built from the collaborators each
needs, the route table's handlers resolved on them, the Klein app and the root
resource built from the table, and the Site (build_site)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from treq.client import HTTPClient
from twisted.web.resource import IResource

from devpi_twisted.model.audit import AuditOps
from devpi_twisted.model.hook_ops import HookOps
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.project_paging import SortedNames
from devpi_twisted.model.release_ops import ReleaseOps
from devpi_twisted.model.search import SearchOps
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.replication.feed import ChangelogFeed
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.web.app import ManagementApp
from devpi_twisted.web.audit import AuditApp
from devpi_twisted.web.blobcopy import BlobCopies
from devpi_twisted.web.deps import MirrorCache, Offload, ReplicaLoop
from devpi_twisted.web.dispatch import Dispatcher, build_klein, resolve
from devpi_twisted.web.files import FileApp
from devpi_twisted.web.helpers import RequestHelpers
from devpi_twisted.web.hooks import HookApp
from devpi_twisted.web.listing import ListBodies
from devpi_twisted.web.metrics import RequestMetrics
from devpi_twisted.web.ops_routes import OpsApp
from devpi_twisted.web.pages import SimplePages
from devpi_twisted.web.policy import PolicyApp
from devpi_twisted.web.projects import ProjectApp
from devpi_twisted.web.replica_writes import ReplicaWrites
from devpi_twisted.web.replication import ReplicationApp
from devpi_twisted.web.routes import ROUTES
from devpi_twisted.web.search import SearchApp, SearchPage
from devpi_twisted.web.site import DevpiSite, ServerInfo
from devpi_twisted.web.tokens import TokenApp
from devpi_twisted.web.ui.browse import WebPages
from devpi_twisted.web.ui.details import VersionDetails
from devpi_twisted.web.ui.webapp import WebApp
from devpi_twisted.web.uploads import UploadApp


def build_resource(ops: ServerOps, info: ServerInfo, releases: ReleaseOps, simple: SimpleOps,
                   blobs: BlobStore, offload: Offload, staging: Path, *,
                   metrics: RequestMetrics, http: HTTPClient | None = None,
                   mirror: MirrorCache | None = None, feed: ChangelogFeed | None = None,
                   replica: ReplicaLoop | None = None, audit: AuditOps | None = None,
                   search: SearchOps | None = None, search_page: SearchPage | None = None,
                   hooks: HookOps | None = None, wake_hooks: Callable[[], None] = lambda: None,
                   hook_stats: Callable[[], Mapping[str, int]] = dict) -> IResource:
    """The root resource answering every route of web/routes.py: ``mirror`` where this
    node mirrors, ``feed`` where it serves replicas, ``replica`` where it is one;
    ``search`` (by default over ``releases``' storage) with ``search_page`` its HTML."""
    helpers = RequestHelpers(ops, info, feed)
    copies = BlobCopies(blobs, staging)
    policy_stats: dict[str, int] = {}
    pages = SimplePages(ops, simple, helpers, ListBodies(offload, staging), mirror, policy_stats)
    policy = PolicyApp(ops, simple, pages, helpers, policy_stats)
    files = FileApp(ops, releases, blobs, offload, helpers.identity, mirror, replica,
                    policy.check_file)
    policy_stats.update(files.stats)  # one dict of counters, shown by /+metrics
    files.stats = policy_stats
    web_pages = WebPages(ops, releases, simple, pages, helpers, VersionDetails(copies, offload))
    web = WebApp(ops, releases, web_pages, helpers)
    apps = {
        "management": ManagementApp(ops, info, helpers,
                                    SortedNames(releases.storage, releases.project_names),
                                    pages.installer_listing, web_pages),
        "pages": pages,
        "policy": policy,
        "files": files,
        "projects": ProjectApp(ops, releases, simple, pages, helpers, blobs, copies, offload,
                               staging, web_pages, policy),
        "uploads": UploadApp(releases, helpers, copies, offload, staging, http,
                             lambda: mirror is not None and mirror.offline),
        "ops": OpsApp(ops, info, blobs, metrics, files.stats, helpers.identity, mirror, feed,
                      replica, web, releases.storage.delivery_counts, hook_stats),
        "web": web,
        "replication": ReplicationApp(feed),
        "tokens": TokenApp(ops, helpers),
        "audit": AuditApp(audit, helpers),
        "hooks": HookApp(hooks if hooks is not None else HookOps(releases.storage),
                         helpers, wake_hooks),
        "search": SearchApp(search if search is not None else SearchOps(releases.storage), helpers,
                            search_page if search_page is not None else web.search),
    }
    handlers = resolve(ROUTES, apps)
    return Dispatcher(handlers, build_klein(handlers).resource())


def build_site(ops: ServerOps, info: ServerInfo, releases: ReleaseOps, simple: SimpleOps,
               blobs: BlobStore, offload: Offload, staging: Path, *, serial: Callable[[], int],
               http: HTTPClient | None = None, mirror: MirrorCache | None = None,
               feed: ChangelogFeed | None = None, replica: ReplicaLoop | None = None,
               primary_url: str = "", proxy_timeout: float = 0.0,
               primary_uuid: Callable[[], str] | None = None, access_log: bool = False,
               metrics: RequestMetrics | None = None, audit: AuditOps | None = None,
               search: SearchOps | None = None, wake_hooks: Callable[[], None] = lambda: None,
               hook_stats: Callable[[], Mapping[str, int]] = dict) -> DevpiSite:
    """The Site of this node: on a replica, writes are relayed to ``primary_url``."""
    metrics = metrics if metrics is not None else RequestMetrics()
    resource = build_resource(ops, info, releases, simple, blobs, offload, staging,
                              metrics=metrics, http=http, mirror=mirror, feed=feed,
                              replica=replica, audit=audit, search=search, wake_hooks=wake_hooks,
                              hook_stats=hook_stats)
    if replica is not None:
        resource = ReplicaWrites(resource, replica, primary_url, info, proxy_timeout)
    return DevpiSite(resource, info, serial, access_log=access_log, metrics=metrics,
                     primary_uuid=primary_uuid)
