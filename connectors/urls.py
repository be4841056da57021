from __future__ import annotations

from django.urls import path

from connectors import views

app_name = "connectors"

urlpatterns = [
    path("<int:pk>/events", views.connector_events, name="events"),
    path("<int:pk>/webchat/session", views.webchat_session, name="webchat-session"),
]
