from django.contrib.auth import views as auth_views
from django.urls import path

from web import views

app_name = "web"
nb = "notebooks/<uuid:notebook_id>/"
urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="web/login.html", next_page="web:notebooks", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="web:login"), name="logout"),
    path("", views.home, name="home"),
    path("notebooks/", views.notebook_list, name="notebooks"),
    path(nb, views.notebook_detail, name="notebook"),
    path(f"{nb}rename/", views.notebook_rename, name="notebook-rename"),
    path(f"{nb}delete/", views.notebook_delete, name="notebook-delete"),
    path(f"{nb}sources/<uuid:source_id>/", views.source_detail, name="source"),
    path(f"{nb}reports/<uuid:report_id>/", views.report_detail, name="report"),
    path(f"{nb}podcasts/<uuid:podcast_id>/", views.podcast_detail, name="podcast"),
]
