from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from assistant_site import api, views

admin.site.site_header = _("Assistant Studio administration")
admin.site.site_title = _("Assistant Studio")
admin.site.index_title = _("Administration")

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("workflows.urls")),
    path("api/", include("knowledge.urls")),
    path("api/", include("connectors.api_urls")),
    path("connectors/", include("connectors.urls")),
    path("", include("frontend.urls")),
    path(
        "api/sharing/<str:label>/<str:pk>/",
        api.ObjectGrantsApi.as_view(),
        name="sharing-grants",
    ),
    path(
        "api/sharing/<str:label>/<str:pk>/grant/",
        api.ObjectPermissionGrantApi.as_view(),
        name="sharing-grant",
    ),
    path(
        "api/sharing/<str:label>/<str:pk>/revoke/",
        api.ObjectPermissionRevokeApi.as_view(),
        name="sharing-revoke",
    ),
]
# The admin speaks the browser's language (Accept-Language) or the /i18n/setlang/ choice.
urlpatterns.append(path("admin/", admin.site.urls))
