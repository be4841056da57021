from __future__ import annotations

from django.urls import path

from connectors import api

app_name = "connectors-api"

urlpatterns = [
    path("connectors/", api.ConnectorListApi.as_view(), name="connector-list"),
    path("connectors/create/", api.ConnectorCreateApi.as_view(), name="connector-create"),
    path("connectors/<int:pk>/", api.ConnectorDetailApi.as_view(), name="connector-detail"),
    path("connectors/<int:pk>/update/", api.ConnectorUpdateApi.as_view(), name="connector-update"),
    path("connectors/<int:pk>/delete/", api.ConnectorDeleteApi.as_view(), name="connector-delete"),
    path(
        "connectors/<int:pk>/webhook/", api.ConnectorWebhookApi.as_view(), name="connector-webhook"
    ),
    path(
        "connectors/<int:pk>/identify/",
        api.ConnectorIdentifyApi.as_view(),
        name="connector-identify",
    ),
    path("connector-events/", api.InboundEventListApi.as_view(), name="event-list"),
    path("connector-events/<int:pk>/", api.InboundEventDetailApi.as_view(), name="event-detail"),
    path(
        "connector-events/<int:pk>/replay/",
        api.InboundEventReplayApi.as_view(),
        name="event-replay",
    ),
    path("deliveries/", api.DeliveryListApi.as_view(), name="delivery-list"),
    path("deliveries/<int:pk>/retry/", api.DeliveryRetryApi.as_view(), name="delivery-retry"),
]
