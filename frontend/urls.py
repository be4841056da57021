from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from frontend import views

app_name = "frontend"

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="frontend/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="frontend:login"), name="logout"),
    path("studio/", views.studio, name="studio"),
    re_path(r"^studio/(?P<path>.+)$", views.studio, name="studio-page"),
    path("chat/widget.js", views.widget_loader, name="widget-loader"),
    path("chat/<int:pk>/", views.chat_page, name="chat"),
]
