from __future__ import annotations

from django.urls import path

from workflows import api

app_name = "workflows"

urlpatterns = [
    path("workflows/", api.WorkflowListApi.as_view(), name="workflow-list"),
    path("workflows/create/", api.WorkflowCreateApi.as_view(), name="workflow-create"),
    path("workflows/<uuid:pk>/", api.WorkflowDetailApi.as_view(), name="workflow-detail"),
    path("workflows/<uuid:pk>/update/", api.WorkflowUpdateApi.as_view(), name="workflow-update"),
    path("workflows/<uuid:pk>/delete/", api.WorkflowDeleteApi.as_view(), name="workflow-delete"),
    path("workflows/<uuid:pk>/draft/", api.WorkflowDraftApi.as_view(), name="workflow-draft"),
    path(
        "workflows/<uuid:pk>/draft/save/",
        api.WorkflowDraftSaveApi.as_view(),
        name="workflow-draft-save",
    ),
    path(
        "workflows/<uuid:pk>/validate/", api.WorkflowValidateApi.as_view(), name="workflow-validate"
    ),
    path("workflows/<uuid:pk>/publish/", api.WorkflowPublishApi.as_view(), name="workflow-publish"),
    path(
        "workflows/<uuid:pk>/versions/",
        api.WorkflowVersionListApi.as_view(),
        name="workflow-versions",
    ),
    path(
        "workflows/<uuid:pk>/runs/create/",
        api.WorkflowRunCreateApi.as_view(),
        name="workflow-run-create",
    ),
    path("workflows/<uuid:pk>/runs/", api.WorkflowRunListApi.as_view(), name="workflow-runs"),
    path(
        "workflows/<uuid:pk>/messages/",
        api.WorkflowMessageApi.as_view(),
        name="workflow-message",
    ),
    path(
        "workflows/<uuid:pk>/hooks/<slug:node_id>/",
        api.WorkflowWebhookApi.as_view(),
        name="workflow-webhook",
    ),
    path(
        "workflows/<uuid:pk>/hooks/<slug:node_id>/runs/<uuid:run_id>/",
        api.WorkflowWebhookRunApi.as_view(),
        name="workflow-webhook-run",
    ),
    path(
        "workflows/<uuid:pk>/nodes/<slug:node_id>/test/",
        api.WorkflowNodeTestApi.as_view(),
        name="workflow-node-test",
    ),
    path("workflows/import/", api.WorkflowImportApi.as_view(), name="workflow-import"),
    path("workflows/<uuid:pk>/export/", api.WorkflowExportApi.as_view(), name="workflow-export"),
    path("workflows/<uuid:pk>/diff/", api.WorkflowDiffApi.as_view(), name="workflow-diff"),
    path(
        "workflows/<uuid:pk>/versions/<int:number>/rollback/",
        api.WorkflowRollbackApi.as_view(),
        name="workflow-rollback",
    ),
    path("runs/<uuid:pk>/", api.RunDetailApi.as_view(), name="run-detail"),
    path("runs/<uuid:pk>/cancel/", api.RunCancelApi.as_view(), name="run-cancel"),
    path("node-types/", api.NodeTypeListApi.as_view(), name="node-types"),
    path("credentials/", api.CredentialListApi.as_view(), name="credential-list"),
    path("credentials/create/", api.CredentialCreateApi.as_view(), name="credential-create"),
    path("credentials/<int:pk>/", api.CredentialDetailApi.as_view(), name="credential-detail"),
    path(
        "credentials/<int:pk>/update/",
        api.CredentialUpdateApi.as_view(),
        name="credential-update",
    ),
    path(
        "credentials/<int:pk>/delete/",
        api.CredentialDeleteApi.as_view(),
        name="credential-delete",
    ),
    path("model-endpoints/", api.ModelEndpointListApi.as_view(), name="endpoint-list"),
    path("model-endpoints/create/", api.ModelEndpointCreateApi.as_view(), name="endpoint-create"),
    path("model-endpoints/<int:pk>/", api.ModelEndpointDetailApi.as_view(), name="endpoint-detail"),
    path(
        "model-endpoints/<int:pk>/update/",
        api.ModelEndpointUpdateApi.as_view(),
        name="endpoint-update",
    ),
    path(
        "model-endpoints/<int:pk>/probe/",
        api.ModelEndpointProbeApi.as_view(),
        name="endpoint-probe",
    ),
    path(
        "model-endpoints/<int:pk>/delete/",
        api.ModelEndpointDeleteApi.as_view(),
        name="endpoint-delete",
    ),
]
