from __future__ import annotations

from django.urls import path

from knowledge import api

app_name = "knowledge"

urlpatterns = [
    path("knowledge-bases/", api.KnowledgeBaseListApi.as_view(), name="base-list"),
    path("knowledge-bases/create/", api.KnowledgeBaseCreateApi.as_view(), name="base-create"),
    path("knowledge-bases/<int:pk>/", api.KnowledgeBaseDetailApi.as_view(), name="base-detail"),
    path(
        "knowledge-bases/<int:pk>/update/",
        api.KnowledgeBaseUpdateApi.as_view(),
        name="base-update",
    ),
    path(
        "knowledge-bases/<int:pk>/delete/",
        api.KnowledgeBaseDeleteApi.as_view(),
        name="base-delete",
    ),
    path(
        "knowledge-bases/<int:pk>/documents/",
        api.DocumentListApi.as_view(),
        name="document-list",
    ),
    path(
        "knowledge-bases/<int:pk>/documents/upload/",
        api.DocumentUploadApi.as_view(),
        name="document-upload",
    ),
    path(
        "knowledge-bases/<int:pk>/search/",
        api.KnowledgeBaseSearchApi.as_view(),
        name="base-search",
    ),
    path("documents/<uuid:pk>/", api.DocumentDetailApi.as_view(), name="document-detail"),
    path("documents/<uuid:pk>/enable/", api.DocumentEnableApi.as_view(), name="document-enable"),
    path(
        "documents/<uuid:pk>/disable/",
        api.DocumentDisableApi.as_view(),
        name="document-disable",
    ),
    path("documents/<uuid:pk>/retry/", api.DocumentRetryApi.as_view(), name="document-retry"),
    path(
        "documents/<uuid:pk>/download/",
        api.DocumentDownloadApi.as_view(),
        name="document-download",
    ),
    path("documents/<uuid:pk>/delete/", api.DocumentDeleteApi.as_view(), name="document-delete"),
]
